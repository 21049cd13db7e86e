#!/usr/bin/env bash
# The workshop material, as a room would use it:
#   1. the notebooks are in sync with their .py sources (tutorials/notebooks.py --check);
#   2. every tutorials/NN_*.py (any number, whoever wrote it) runs top to bottom with its solutions: exit 0,
#      every exercise's check passes, every figure it names is saved; its participant version, exercises left
#      blank, runs too and every exercise fails its check with a message (tutorials/run_all.py);
#      each run within TUTORIAL_TIME_LIMIT seconds (default 120);
#   3. the pre-flight check (python -m minigpt2 --doctor) passes here;
#   4. tutorials/requirements-workshop.txt installs into a fresh venv, where the doctor passes and a notebook
#      runs in a Jupyter kernel without writing anything to stderr (no warnings). WORKSHOP_ROOM=0 skips it.
# The model is whatever each tutorial's MODEL picks: gpt2 if cached or downloadable, else the tiny random
# one (set MINIGPT2_WORKSHOP_MODEL=tiny|gpt2|<dir> to force one for every tutorial).
set -euo pipefail
cd "$(dirname "$0")/.."
export MPLBACKEND=Agg
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export MINIGPT2_WORKSHOP_CACHE="${MINIGPT2_WORKSHOP_CACHE:-$work/cache}"
start=$(date +%s)

echo "-- notebooks in sync with their sources"
python tutorials/notebooks.py --check

echo "-- every tutorial: solutions pass, blanks fail clearly, figures drawn"
python tutorials/run_all.py

echo "-- pre-flight check (this is the developers' environment, .[dev]: it lacks JupyterLab and ipywidgets, so the"
echo "   notebook-packages check may fail here; the room's install below must pass every check)"
python -m minigpt2 --doctor || [ $? -eq 1 ]  # 1: a check failed (said above); anything else: the doctor crashed

if [ "${WORKSHOP_ROOM:-1}" != "0" ]; then
  echo "-- a room's install: tutorials/requirements-workshop.txt in a fresh venv"
  room_start=$(date +%s)
  python -m venv "$work/room"
  # A copy of the checkout, installed non-editable: building there leaves this tree (and its C core) alone.
  mkdir "$work/src" && tar --exclude=./.git --exclude=./build --exclude='*.so' -cf - . | tar -xf - -C "$work/src"
  "$work/room/bin/python" -m pip install -q --disable-pip-version-check -U pip  # as tutorials/README.md says
  "$work/room/bin/python" -m pip install -q --disable-pip-version-check -r tutorials/requirements-workshop.txt "$work/src"
  (cd "$work" && "$work/room/bin/python" -m minigpt2 --doctor)
  MINIGPT2_WORKSHOP_MODEL=tiny "$work/room/bin/python" "$work/src/tutorials/run_all.py" --notebook \
    "$work/src/tutorials/03_layer_norm_and_gelu_solution.ipynb"
  echo "   (the room's install and checks took $(( $(date +%s) - room_start )) s)"
fi
echo "-- tutorials stage done in $(( $(date +%s) - start )) s"
