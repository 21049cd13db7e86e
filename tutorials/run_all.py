"""Run every tutorial as CI does: solutions pass, blanks fail clearly, figures appear, within a time limit.

    python tutorials/run_all.py                  # every tutorials/NN_*.py
    python tutorials/run_all.py 03 07            # only those
    python tutorials/run_all.py --notebook tutorials/03_layer_norm_and_gelu_solution.ipynb   # in Jupyter
    TUTORIAL_TIME_LIMIT=120 (seconds per run)    MINIGPT2_WORKSHOP_MODEL=tiny|gpt2|<dir> (the model)

For each tutorial:

1. the source runs top to bottom as a script, with its solutions: it must exit 0, every exercise's check
   must pass, and every figure it names (``show(fig, "NN_...")``) must be saved as a non-empty PNG;
2. if it has exercises, the participant's version (notebooks.py's blanks, as in NN_name.ipynb) runs with
   MINIGPT2_EXERCISES=keep-going (and without figures, drawn in step 1): every exercise must fail its
   check, with a message that says what is missing; none may pass, and nothing else may break.

Ends with a table of the time each took. Exit status 0 when all is well, 1 otherwise.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import notebooks  # noqa: E402

FIGURE_NAME = re.compile(r"""["'](\d\d_[A-Za-z0-9_]+)["']""")


def figure_names(text: str, number: str) -> list:
    """The figure names a tutorial passes to show(): string literals "NN_..." (NN its own number) on a line
    that calls show(, or calls a function of the tutorial that passes its argument on to show()."""
    helpers, current = set(), None
    for line in text.splitlines():
        definition = re.match(r"def (\w+)\(", line)
        if definition:
            current = definition.group(1)
        elif line and not line[0].isspace():
            current = None
        if current and "show(" in line and not FIGURE_NAME.search(line):
            helpers.add(current)
    calls = re.compile(r"\b(?:show|" + "|".join(map(re.escape, sorted(helpers))) + r")\(" if helpers else r"\bshow\(")
    names = [n for line in text.splitlines() if calls.search(line) for n in FIGURE_NAME.findall(line)]
    return sorted({n for n in names if n.startswith(number + "_")})


def run(path, env, limit, quiet=False):
    start = time.perf_counter()
    try:
        result = subprocess.run([sys.executable, path], env=env, timeout=limit, text=True,
                                stdout=subprocess.PIPE if quiet else None, stderr=subprocess.STDOUT if quiet else None)
        code, output = result.returncode, result.stdout or ""
    except subprocess.TimeoutExpired as e:
        code, output = "timeout", (e.stdout or b"").decode("utf-8", "replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
    return code, time.perf_counter() - start, output


def read_log(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def check_tutorial(path, work, limit, have_matplotlib):
    """(errors, row of the summary table) for one tutorial."""
    name = os.path.basename(path)[:-3]
    number = name[:2]
    text = open(path, encoding="utf-8").read()
    errors = []
    try:
        numbers = notebooks.exercises(text)
    except notebooks.ExerciseMarkupError as e:
        return [f"{name}: {e}"], (name, "-", "-", "-", "-")
    figures_dir = os.path.join(work, "figures", name)
    scratch = os.path.join(work, "tmp")  # the tutorials' temp dir: what they write there goes when this run ends
    os.makedirs(scratch, exist_ok=True)
    env = dict(os.environ, MINIGPT2_FIGURES=figures_dir, MPLBACKEND="Agg", PYTHONPATH=HERE + os.pathsep
               + os.environ.get("PYTHONPATH", ""), TMPDIR=scratch, TEMP=scratch, TMP=scratch)
    env.pop("MINIGPT2_EXERCISES", None)

    print(f"\n======== {name}: with the solutions", flush=True)
    log = os.path.join(work, name + ".solved.jsonl")
    code, seconds, _ = run(path, dict(env, MINIGPT2_EXERCISE_LOG=log), limit)
    if code != 0:
        errors.append(f"{name}: " + (f"took over {limit} s" if code == "timeout" else f"exited with {code}"))
    results = {r["number"]: r for r in read_log(log)}
    for x in numbers:
        if x not in results:
            errors.append(f"{name}: exercise {x} was never checked")
        elif not results[x]["passed"]:
            errors.append(f"{name}: the solution of exercise {x} fails its check: {results[x]['message']}")
    drawn = "no matplotlib"
    if have_matplotlib:
        wanted = figure_names(text, number)
        missing = [f for f in wanted if not os.path.isfile(os.path.join(figures_dir, f + ".png"))
                   or os.path.getsize(os.path.join(figures_dir, f + ".png")) == 0]
        errors += [f"{name}: figure {f}.png was not drawn" for f in missing]
        drawn = f"{len(wanted) - len(missing)}/{len(wanted)}"

    blank_seconds = "-"
    if numbers:
        print(f"\n======== {name}: the participant's version, exercises left blank", flush=True)
        participant = os.path.join(work, name + ".py")
        with open(participant, "w", encoding="utf-8") as f:
            f.write(notebooks.variant(text, "participant"))
        log = os.path.join(work, name + ".blank.jsonl")
        code, blank_seconds, output = run(participant, dict(env, MINIGPT2_EXERCISE_LOG=log,
                                                            MINIGPT2_EXERCISES="keep-going", MINIGPT2_NO_FIGURES="1"),
                                     limit, quiet=True)
        print("".join(line for line in output.splitlines(keepends=True) if line.startswith(("✗", "✓", "  ("))))
        if code != 0:
            errors.append(f"{name} (blank): " + (f"took over {limit} s" if code == "timeout" else
                                                 f"exited with {code}:\n{output[-3000:]}"))
        results = {r["number"]: r for r in read_log(log)}
        for x in numbers:
            r = results.get(x)
            if r is None:
                errors.append(f"{name} (blank): exercise {x} was never checked")
            elif r["passed"]:
                errors.append(f"{name} (blank): exercise {x} passes with its blank left in")
            elif not r["message"] or len(r["message"]) < 20:
                errors.append(f"{name} (blank): exercise {x} fails without saying why: {r['message']!r}")
        blank_seconds = f"{blank_seconds:.1f}"
    return errors, (name, f"{seconds:.1f}", blank_seconds, ", ".join(numbers) or "-", drawn)


def execute_notebook(path, limit) -> list:
    """Run a notebook in a Jupyter kernel (nbclient) as a participant would; return its problems: an error,
    or anything written to stderr (warnings such as TqdmWarning show there, in red)."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    client = NotebookClient(notebook, timeout=int(limit), kernel_name="python3",
                            resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}})
    problems = []
    try:
        client.execute()
    except Exception as e:  # CellExecutionError names the cell and the traceback
        problems.append(f"{os.path.basename(path)}: {type(e).__name__}: {str(e)[-2000:]}")
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                problems.append(f"{os.path.basename(path)} wrote to stderr: {output.get('text', '')[:500]!r}")
    print(f"{os.path.basename(path)}: executed in Jupyter in {time.perf_counter() - start:.1f} s, "
          f"{len(problems)} problem(s)")
    return problems


def main(argv) -> int:
    limit = float(os.environ.get("TUTORIAL_TIME_LIMIT", "120"))
    if argv[:1] == ["--notebook"]:  # python tutorials/run_all.py --notebook tutorials/03_..._solution.ipynb
        wrong = [path for path in argv[1:] if not (path.endswith(".ipynb") and os.path.isfile(path))]
        if wrong or not argv[1:]:  # (running nothing must not pass)
            what = f"{wrong[0]!r} is not a notebook file" if wrong else "no notebook given"
            print(f"run_all.py --notebook: {what}; give one or more .ipynb files, e.g. "
                  f"tutorials/03_layer_norm_and_gelu_solution.ipynb", file=sys.stderr)
            return 2
        try:
            import nbclient  # noqa: F401
            import nbformat  # noqa: F401
        except ImportError as e:
            print(f"run_all.py --notebook needs nbclient and nbformat ({e}); they come with jupyterlab: pip install -r "
                  f"tutorials/requirements-workshop.txt (or pip install nbclient)", file=sys.stderr)
            return 2
        problems = [p for path in argv[1:] for p in execute_notebook(path, limit)]
        for p in problems:
            print("FAILED: " + p, file=sys.stderr)
        return 1 if problems else 0
    known = sorted(os.path.basename(p)[:2] for p in notebooks.sources())
    wrong = [a for a in argv if a not in known]
    if wrong:  # (a typo such as "3" or "--notebok" ran nothing and printed an empty table)
        print(f"run_all.py: {wrong[0]!r} is neither a tutorial's number ({', '.join(known)}) nor --notebook (first); "
              f"usage: run_all.py [NN ...] | run_all.py --notebook PATH.ipynb ...", file=sys.stderr)
        return 2
    paths = [p for p in notebooks.sources() if not argv or os.path.basename(p)[:2] in argv]
    try:
        import matplotlib  # noqa: F401
        have_matplotlib = True
    except ImportError:
        have_matplotlib = False
    errors, rows = [], []
    with tempfile.TemporaryDirectory() as work:
        for path in paths:
            e, row = check_tutorial(path, work, limit, have_matplotlib)
            errors += e
            rows.append(row)
    print(f"\n{'tutorial':34} {'solved s':>8} {'blank s':>8} {'figures':>8}  exercises")
    for name, solved, blank, numbers, drawn in rows:
        print(f"{name:34} {solved:>8} {blank:>8} {drawn:>8}  {numbers}")
    for e in errors:
        print("FAILED: " + e, file=sys.stderr)
    return 1 if errors or not paths else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
