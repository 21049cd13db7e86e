"""The floors setup.py declares, for the "oldest" CI stage (read with ast: setup.py is not run).

    python3 .ci/floors.py python     ->  3.9                      (from python_requires=">=3.9")
    python3 .ci/floors.py pins       ->  numpy==1.24.0 cffi==...  (each install_requires ">=X" as "==X")
"""
import ast
import os
import re
import sys

SETUP = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "setup.py")


def setup_keywords() -> dict:
    tree = ast.parse(open(SETUP, encoding="utf-8").read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup":
            return {k.arg: k.value for k in node.keywords if k.arg}
    raise SystemExit("setup.py: no setup(...) call")


def main(what):
    keywords = setup_keywords()
    if what == "python":
        spec = ast.literal_eval(keywords["python_requires"])
        match = re.fullmatch(r">=\s*(\d+\.\d+)", spec)
        if not match:
            raise SystemExit(f"python_requires={spec!r}: expected '>=3.N'")
        print(match.group(1))
    elif what == "pins":
        pins = []
        for requirement in ast.literal_eval(keywords["install_requires"]):
            match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9.]*)", requirement)
            if not match:
                raise SystemExit(f"install_requires entry {requirement!r}: expected 'name>=floor'")
            name, floor = match.groups()
            pins.append(f"{name}=={floor}")
        print(" ".join(pins))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "")
