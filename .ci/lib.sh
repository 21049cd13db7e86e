# Shared by the CI stages (source it): a scratch directory removed on exit, fresh venvs inside it, the
# interpreters pyenv carries, and the floors setup.py declares. Nothing is cached between runs except pip's
# download cache; HF_HOME points into the scratch directory, so no user's Hugging Face cache is touched.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/minigpt2-ci.XXXXXX")"
trap 'rm -rf "$SCRATCH"' EXIT
export HF_HOME="$SCRATCH/hf_home"
unset HF_HUB_CACHE HUGGINGFACE_HUB_CACHE HF_ENDPOINT HF_HUB_OFFLINE TRANSFORMERS_OFFLINE HF_TOKEN || true

# python_for 3.9 -> the newest 3.9.x interpreter: pyenv's versions/, else python3.9 on PATH.
python_for() {
  local found
  found="$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}/versions/$1".* 2>/dev/null | grep -E "/$1\.[0-9]+$" | sort -V | tail -1 || true)"
  if [ -n "$found" ] && [ -x "$found/bin/python" ]; then echo "$found/bin/python"; return; fi
  command -v "python$1" || { echo "no Python $1 found (pyenv versions, or python$1 on PATH)" >&2; return 1; }
}

# fresh_venv NAME PYTHON -> a new venv at $SCRATCH/NAME (its path is printed)
fresh_venv() {
  "$2" -m venv "$SCRATCH/$1" >&2
  echo "$SCRATCH/$1"
}

# fresh_source NAME -> a copy of the repository's tracked files (as in a fresh clone) at $SCRATCH/NAME
fresh_source() {
  mkdir -p "$SCRATCH/$1"
  (cd "$ROOT" && git ls-files -z | xargs -0 tar -cf - --) | tar -xf - -C "$SCRATCH/$1"
  echo "$SCRATCH/$1"
}

# Read setup.py: the lowest Python (python_requires=">=3.x") and each runtime dependency pinned to its floor.
oldest_python() { python3 "$ROOT/.ci/floors.py" python; }
floor_pins() { python3 "$ROOT/.ci/floors.py" pins; }
