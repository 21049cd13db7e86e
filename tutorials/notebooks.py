"""Write each tutorial's notebooks from its jupytext source, or check that they are in sync.

    python tutorials/notebooks.py            # (re)write the notebooks from tutorials/NN_*.py
    python tutorials/notebooks.py --check    # exit 1 naming every notebook that is missing or stale

The .py file (jupytext "percent" format) is the one source of a tutorial, its exercises and their solutions.
It runs as a script with the solutions in place, diffs cleanly and is what CI executes. An exercise in it
looks like this:

    # BLANK scores = ...  # exercise 4.1: your code here
    ### BEGIN SOLUTION 4.1
    scores = (q @ k.transpose(0, 1, 3, 2)) * scale
    ### END SOLUTION 4.1
    scores = _workshop.check_answer("4.1", "the attention scores", scores, library_scores)

From it this script writes two notebooks, without outputs, for Jupyter and Colab:

- ``NN_name.ipynb``, the participant's: each solution is removed and its ``# BLANK`` lines become code
  (``scores = ...``), which fails its check with a message until the learner fills it in;
- ``NN_name_solution.ipynb``: the solutions, without the blanks (a tutorial without exercises has only the
  first notebook, equal to its source).

The notebooks carry no jupytext pairing: editing a notebook never rewrites the source (or the solutions).
Edit the .py and run this script.
"""
from __future__ import annotations

import glob
import hashlib
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BEGIN = re.compile(r"^\s*### BEGIN SOLUTION (\S+)\s*$")
END = re.compile(r"^\s*### END SOLUTION (\S+)\s*$")
BLANK = re.compile(r"^(\s*)# BLANK (.*)$")
CHECK = re.compile(r"""check_(?:answer|function)\(\s*["']([^"']+)["']""")
SOLUTION_SUFFIX = "_solution.ipynb"


class ExerciseMarkupError(ValueError):
    pass


def sources() -> list:
    return sorted(glob.glob(os.path.join(HERE, "[0-9][0-9]_*.py")))


def exercises(text: str) -> list:
    """The exercise numbers of a tutorial's source, in order; checks that the markup is well formed."""
    numbers, open_region, blanks_seen = [], None, 0
    for n, line in enumerate(text.splitlines(), 1):
        if BLANK.match(line):
            blanks_seen += 1
        begin, end = BEGIN.match(line), END.match(line)
        if begin:
            if open_region:
                raise ExerciseMarkupError(f"line {n}: solution {begin.group(1)} begins inside {open_region}")
            if not blanks_seen:
                raise ExerciseMarkupError(f"line {n}: solution {begin.group(1)} has no '# BLANK' line before it")
            open_region, blanks_seen = begin.group(1), 0
            if open_region in numbers:
                raise ExerciseMarkupError(f"line {n}: exercise {open_region} appears twice")
            numbers.append(open_region)
        elif end:
            if end.group(1) != open_region:
                raise ExerciseMarkupError(f"line {n}: END SOLUTION {end.group(1)} does not close {open_region}")
            open_region = None
    if open_region:
        raise ExerciseMarkupError(f"solution {open_region} never ends")
    checked = set(CHECK.findall(text))
    unchecked = [x for x in numbers if x not in checked]
    if unchecked:
        raise ExerciseMarkupError(f"exercise(s) {', '.join(unchecked)} have no check_answer/check_function call")
    return numbers


def variant(text: str, which: str) -> str:
    """The source as the participant ("participant": blanks, no solutions) or the solution ("solution")
    sees it. Marker lines disappear from both."""
    assert which in ("participant", "solution")
    out, inside = [], False
    for line in text.splitlines(keepends=True):
        if BEGIN.match(line):
            inside = True
            continue
        if END.match(line):
            inside = False
            continue
        blank = BLANK.match(line)
        if blank:
            if which == "participant":
                out.append(blank.group(1) + blank.group(2).rstrip() + "\n")
            continue
        if inside and which == "participant":
            continue
        out.append(line)
    return "".join(out)


def notebook_text(py_text: str) -> str:
    import jupytext

    notebook = jupytext.reads(py_text, fmt="py:percent")
    notebook.metadata.get("jupytext", {}).pop("formats", None)  # no pairing: see the module docstring
    if not notebook.metadata.get("jupytext"):
        notebook.metadata.pop("jupytext", None)
    seen = set()
    for cell in notebook.cells:  # ids from the content, so regenerating an unchanged tutorial changes nothing
        cell.metadata.pop("lines_to_next_cell", None)
        digest = hashlib.sha1(cell.source.encode("utf-8")).hexdigest()[:12]
        cell_id, n = digest, 1
        while cell_id in seen:
            cell_id, n = f"{digest}-{n}", n + 1
        seen.add(cell_id)
        cell.id = cell_id
    return jupytext.writes(notebook, fmt="ipynb")


def wanted_notebooks(py_path: str) -> dict:
    """{notebook path: its text} for one tutorial source."""
    text = open(py_path, encoding="utf-8").read()
    base = py_path[:-3]
    if not exercises(text):
        return {base + ".ipynb": notebook_text(text)}
    return {base + ".ipynb": notebook_text(variant(text, "participant")),
            base + SOLUTION_SUFFIX: notebook_text(variant(text, "solution"))}


def main(argv) -> int:
    if argv not in ([], ["--check"]):  # a typo of --check must not rewrite the notebooks
        print(f"notebooks.py: {argv[0]!r} is not an option; usage: notebooks.py (writes the notebooks) | notebooks.py "
              f"--check (fails on a stale one)", file=sys.stderr)
        return 2
    check = "--check" in argv
    stale, problems, expected = [], [], set()
    for py in sources():
        try:
            notebooks = wanted_notebooks(py)
        except ExerciseMarkupError as e:
            problems.append(f"{os.path.relpath(py)}: {e}")
            continue
        for path, wanted in notebooks.items():
            expected.add(path)
            current = open(path, encoding="utf-8").read() if os.path.exists(path) else None
            if current == wanted:
                continue
            if check:
                stale.append(os.path.relpath(path))
            else:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(wanted)
                print(f"wrote {os.path.relpath(path)}")
    for path in glob.glob(os.path.join(HERE, "[0-9][0-9]_*.ipynb")):
        if path not in expected and not any(p.startswith(os.path.relpath(path)) for p in problems):
            problems.append(f"{os.path.relpath(path)} has no .py source (or its tutorial has no exercises)")
    for p in problems:
        print(p, file=sys.stderr)
    if stale:
        print("stale or missing notebooks (run: python tutorials/notebooks.py): " + ", ".join(stale), file=sys.stderr)
    return 1 if (stale or problems) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
