"""Write each tutorial's notebook from its jupytext source, or check that they are in sync.

    python tutorials/notebooks.py            # (re)write tutorials/NN_*.ipynb from tutorials/NN_*.py
    python tutorials/notebooks.py --check    # exit 1 naming every notebook that is missing or stale

The .py file (jupytext "percent" format) is the source: it runs as a script, diffs cleanly and is what
CI executes. The .ipynb beside it is generated, without outputs, for Jupyter and Colab. Both carry
``formats: ipynb,py:percent``, so with jupytext installed Jupyter keeps the pair in sync as you edit
either one; run this script before committing anyway.
"""
from __future__ import annotations

import glob
import hashlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def sources() -> list:
    return sorted(glob.glob(os.path.join(HERE, "[0-9][0-9]_*.py")))


def notebook_text(py_path: str) -> str:
    import jupytext

    notebook = jupytext.read(py_path, fmt="py:percent")
    seen = set()
    for cell in notebook.cells:  # ids from the content, so regenerating an unchanged tutorial changes nothing
        digest = hashlib.sha1(cell.source.encode("utf-8")).hexdigest()[:12]
        cell_id, n = digest, 1
        while cell_id in seen:
            cell_id, n = f"{digest}-{n}", n + 1
        seen.add(cell_id)
        cell.id = cell_id
    return jupytext.writes(notebook, fmt="ipynb")


def main(argv) -> int:
    check = "--check" in argv
    stale = []
    for py in sources():
        ipynb = py[:-3] + ".ipynb"
        wanted = notebook_text(py)
        current = open(ipynb, encoding="utf-8").read() if os.path.exists(ipynb) else None
        if current == wanted:
            continue
        if check:
            stale.append(os.path.relpath(ipynb))
        else:
            with open(ipynb, "w", encoding="utf-8") as f:
                f.write(wanted)
            print(f"wrote {os.path.relpath(ipynb)}")
    orphans = [p for p in glob.glob(os.path.join(HERE, "[0-9][0-9]_*.ipynb")) if not os.path.exists(p[:-6] + ".py")]
    for p in orphans:
        print(f"{os.path.relpath(p)} has no .py source", file=sys.stderr)
    if stale:
        print("stale or missing notebooks (run: python tutorials/notebooks.py): " + ", ".join(stale), file=sys.stderr)
    return 1 if (stale or orphans) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
