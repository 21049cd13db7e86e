#!/usr/bin/env bash
# Stage "oldest": the oldest Python setup.py declares (python_requires), every runtime dependency pinned to the
# floor setup.py declares (.ci/floors.py reads them), `pip install .`; then the command line end to end
# (.ci/user_checks.py) and the whole test suite, whose torch/transformers tests skip (none is installed).
source "$(dirname "$0")/lib.sh"
python_version="$(oldest_python)"
pins="$(floor_pins)"
echo "Python $python_version; $pins"
src="$(fresh_source src)"
venv="$(fresh_venv venv "$(python_for "$python_version")")"
cd "$src"
# shellcheck disable=SC2086  # the pins are separate words
"$venv/bin/pip" install -q . $pins pytest hypothesis
"$venv/bin/pip" check
"$venv/bin/python" "$ROOT/.ci/user_checks.py" --backend c
# The tests import the installed package: they run from outside the checkout (their `python -m minigpt2`
# subprocesses inherit the current directory), with pytest (python -m pytest would put the directory first).
# A few of test_backend's subprocesses put the checkout on PYTHONPATH: its C core is built too, with the
# floor cffi. docs/api.md is generated with numpy 2, whose repr of a float32 (np.float32(...)) numpy 1 lacks:
# that check belongs to the main stage.
"$venv/bin/python" csrc/build_kernels.py >/dev/null
cd "$SCRATCH"
"$venv/bin/pytest" -q -p no:cacheprovider "$src/tests" -k "not test_api_reference_matches_the_docstrings"
