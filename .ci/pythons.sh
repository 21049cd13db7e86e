#!/usr/bin/env bash
# Stage "python versions": on each Python from 3.9 to 3.13, a fresh venv and `pip install .` (newest
# dependencies for that Python), then the import, the tokenizer, a tiny model's forward and generate on both
# backends (.ci/smoke.py), and the outputs transformers recorded in the committed fixtures; on 3.9 also the Hub
# tests, with the huggingface_hub 1.x that Python gets.
source "$(dirname "$0")/lib.sh"
for version in 3.9 3.10 3.11 3.12 3.13; do
  start=$(date +%s)
  src="$(fresh_source "src-$version")"
  venv="$(fresh_venv "venv-$version" "$(python_for "$version")")"
  (cd "$src" && "$venv/bin/pip" install -q . pytest)
  (cd "$SCRATCH" && "$venv/bin/python" "$ROOT/.ci/smoke.py")
  (cd "$src" && "$venv/bin/pytest" -q -p no:cacheprovider tests/test_reference_fixtures.py)
  if [ "$version" = 3.9 ]; then
    # Python 3.9's newest huggingface_hub is a 1.x (1.8), which no other stage installs: the Hub tests with it
    # (from outside the source tree, so the CLI's subprocesses import the installed minigpt2, as in hub_versions.sh)
    "$venv/bin/pip" install -q hypothesis
    "$venv/bin/python" -c "import huggingface_hub; print('-- huggingface_hub', huggingface_hub.__version__)"
    (cd "$SCRATCH" && "$venv/bin/pytest" -q -p no:cacheprovider "$src/tests/test_hub.py")
  fi
  echo "-- Python $version: $(( $(date +%s) - start )) s"
done
