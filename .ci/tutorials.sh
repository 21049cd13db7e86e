#!/usr/bin/env bash
# Run every tutorial (tutorials/NN_*.py) top to bottom as a script, as a workshop would; fail on any error,
# on a tutorial slower than TUTORIAL_TIME_LIMIT seconds (default 120), or on a notebook out of sync with
# its .py source. Figures go to a temporary directory, drawn with the non-interactive Agg backend.
# The model is whatever each tutorial's MODEL picks: gpt2 if cached or downloadable, else the tiny random
# one (set MINIGPT2_WORKSHOP_MODEL=tiny|gpt2|<dir> to force one for every tutorial).
set -euo pipefail
cd "$(dirname "$0")/.."
export MPLBACKEND=Agg
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export MINIGPT2_FIGURES="${MINIGPT2_FIGURES:-$work/figures}"
export MINIGPT2_WORKSHOP_CACHE="${MINIGPT2_WORKSHOP_CACHE:-$work/cache}"
limit=${TUTORIAL_TIME_LIMIT:-120}

echo "-- notebooks in sync with their sources"
python tutorials/notebooks.py --check

summary=""
for tutorial in tutorials/[0-9][0-9]_*.py; do
  echo "-- $tutorial"
  start=$(date +%s.%N)
  python "$tutorial"
  seconds=$(python -c "print(f'{$(date +%s.%N) - $start:.1f}')")
  summary+=$(printf '%-48s %6s s' "$tutorial" "$seconds")$'\n'
  if python -c "import sys; sys.exit(0 if $seconds <= $limit else 1)"; then :; else
    echo "$tutorial took $seconds s, over the limit of $limit s" >&2
    exit 1
  fi
done

echo "-- tutorials passed"
printf '%s' "$summary"
echo "figures drawn:"
ls -1 "$MINIGPT2_FIGURES" 2>/dev/null | sed 's/^/  /' || echo "  (none: is matplotlib installed?)"
