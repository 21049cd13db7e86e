#!/usr/bin/env bash
# Stage "newest": what a new user gets today. The README's commands in a fresh venv on the newest Python, with
# the newest release of every dependency (no extras, so no torch): `pip install -e .`, then the command line end
# to end against the loopback Hub (.ci/user_checks.py), then the Hub tests with this newest huggingface_hub.
source "$(dirname "$0")/lib.sh"
src="$(fresh_source src)"
venv="$(fresh_venv venv "$(python_for 3.13)")"
cd "$src"
"$venv/bin/pip" install -q -e .
"$venv/bin/python" "$ROOT/.ci/user_checks.py" --backend c
"$venv/bin/pip" install -q pytest hypothesis
"$venv/bin/pytest" -q -p no:cacheprovider tests/test_hub.py
