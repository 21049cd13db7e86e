#!/usr/bin/env bash
# Stage "huggingface_hub versions": the Hub tests (tests/test_hub.py: downloads, cache, offline, errors, the
# command line) with the last 1.x release, which the other stages do not install (the floor runs in "oldest",
# 0.36 under transformers 4.46 in the main stage, the newest 2.x in "newest").
source "$(dirname "$0")/lib.sh"
src="$(fresh_source src)"
venv="$(fresh_venv venv "$(python_for 3.11)")"
cd "$src"
"$venv/bin/pip" install -q . pytest hypothesis
for version in 1.33.0; do
  "$venv/bin/pip" install -q "huggingface_hub==$version"
  echo "-- huggingface_hub $version"
  # From outside the source tree, so the CLI's subprocesses import the installed minigpt2 (with its C core),
  # not the source's minigpt2/ (as in the oldest stage)
  (cd "$SCRATCH" && "$venv/bin/pytest" -q -p no:cacheprovider "$src/tests/test_hub.py")
done
