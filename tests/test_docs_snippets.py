"""Every Python code block of the user-facing docs runs, as a reader copies it, in a fresh Python process.

The docs (README.md, docs/*.md, tutorials/README.md, benchmarks/README.md) are what new users copy first; a green
suite once hid that the README's first command crashed for all of them. This file extracts each ```python block,
runs it statement by statement in its own process (so no state leaks between blocks, as in a new session), and
checks the value of each bare expression whose trailing comment is a Python literal (`x.shape  # (1, 6, 768)`)
against that literal. It also checks the `show_work` transcript in docs/tokenizer.md line by line.

"gpt2" / "openai-community/gpt2" come from a loopback Hub (tests/hubserver.py) serving a tiny random GPT-2
(n_embd 8, so a shown 768 is read as the model's n_embd). Names a block takes from its surroundings (`model`,
`input_ids`, `ids`, `mask`, ...) are given by PRELUDE, only when the block does not define them itself, and the
placeholder files the docs name (corpus.txt, my-checkpoint, my-chat-gpt2) are made in the working directory.
SHORTER lists the only edits made to a block (fewer training steps); each must still apply, so a changed doc is
noticed. A block added to the docs is run automatically; one that cannot run here must be listed in SKIP with why.
"""
from __future__ import annotations

import ast
import glob
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

from hubserver import HubServer, tiny_checkpoint_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ["README.md", *sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md"))),
        "tutorials/README.md", "benchmarks/README.md"]
REPO = "openai-community/gpt2"
# The blocks import the minigpt2 this test process imports (the checkout's, or the installed one).
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__import__("minigpt2").__file__)))


def code_blocks(language: str):
    """(doc, first line number, code) of every ```language block of the docs."""
    blocks = []
    for doc in DOCS:
        lines = open(os.path.join(ROOT, doc), encoding="utf-8").read().split("\n")
        i = 0
        while i < len(lines):
            match = re.match(r"^\s*```(\w*)\s*$", lines[i])
            if match:
                end = i + 1
                while not lines[end].strip().startswith("```"):
                    end += 1
                if match.group(1) == language:
                    blocks.append((doc, i + 2, "\n".join(lines[i + 1:end])))
                i = end + 1
            else:
                i += 1
    return blocks


BLOCKS = code_blocks("python")

# Edits to blocks, each (old, new): runs shortened for the test. Each `old` must occur in the block.
SHORTER = {
    "docs/training.md": [("max_steps=500", "max_steps=2"), ("range(100)", "range(3)"), ("max_steps=100", "max_steps=3")],
}

# Blocks that cannot run here, by (doc, first line of the block's code) -> why. None today.
SKIP = {}

# What the blocks take from the text around them; each name is set only when the block does not assign it.
PRELUDE = textwrap.dedent('''
    import numpy as np
    import minigpt2
    from minigpt2 import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained("gpt2")
    tokenizer = AutoTokenizer.from_pretrained("gpt2")
    input_ids = tokenizer("GPT2 is a model developed by OpenAI.", return_tensors="np").input_ids
    prompt, token, n = input_ids, input_ids[:, -1:], 3
    ids, mask, labels = input_ids, np.ones_like(input_ids), input_ids
    ids_from_the_model = model.generate(input_ids, max_new_tokens=5)[0].tolist()
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
''')

# Runs one block in a fresh process: statement by statement; a bare expression with a literal comment is checked.
RUNNER = textwrap.dedent('''
    import ast, json, sys
    code, prelude = json.loads(sys.stdin.read())
    tree = ast.parse(code)
    assigned = {t.id for node in ast.walk(tree) for t in getattr(node, "targets", [getattr(node, "target", None)])
                if isinstance(t, ast.Name)}
    assigned |= {a.asname or a.name.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, (ast.Import, ast.ImportFrom)) for a in node.names}
    needed = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    namespace = {"__name__": "__main__"}
    if needed - assigned:
        exec(prelude, namespace)
        for name in assigned:
            namespace.pop(name, None)
    lines = code.split("\\n")
    failures = []

    def expected_from(line):
        """The literal a trailing comment shows: the whole comment, or its start before a ':' that explains it."""
        if "#" not in line:
            return None
        comment = line.split("#", 1)[1].strip()
        for end in range(len(comment), 0, -1):
            rest = comment[end:].lstrip()
            if rest and not rest.startswith(":"):
                continue
            try:
                return ("literal", ast.literal_eval(comment[:end]))
            except Exception:
                pass
        return None

    for node in tree.body:
        if isinstance(node, ast.Expr):
            value = eval(compile(ast.Expression(node.value), "<doc>", "eval"), namespace)
            shown = expected_from(lines[node.end_lineno - 1])
            if shown is not None:
                want = shown[1]
                if "model" in namespace and isinstance(want, tuple):  # the real GPT-2's width, here the tiny model's
                    width = namespace["model"].config.n_embd
                    want = tuple(width if w == 768 else w for w in want)
                if hasattr(value, "keys"):
                    value = dict(value)
                if hasattr(value, "tolist"):
                    value = value.tolist()
                if value != want:
                    failures.append("line %d: %s gives %r, the doc shows %r"
                                    % (node.lineno, lines[node.lineno - 1].strip(), value, want))
        else:
            exec(compile(ast.Module([node], type_ignores=[]), "<doc>", "exec"), namespace)
    if failures:
        sys.exit("\\n".join(failures))
''')


@pytest.fixture(scope="module")
def docs_env(tmp_path_factory):
    """A loopback Hub serving a tiny GPT-2 as gpt2, a working directory with the files the docs name, and the
    environment for the block processes."""
    tiny = tmp_path_factory.mktemp("tiny_gpt2")
    files = tiny_checkpoint_files(tiny, n_positions=1024)  # the pipeline's default 256 new tokens must fit
    work = tmp_path_factory.mktemp("docs_work")
    with HubServer({REPO: files}, aliases={"gpt2": REPO}) as hub:
        env = {k: v for k, v in os.environ.items()
               if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
        env.update(HF_ENDPOINT=hub.url, HF_HOME=str(work / "hf_home"), HF_HUB_DISABLE_TELEMETRY="1",
                   PYTHONPATH=os.pathsep.join([PACKAGE_PARENT, env.get("PYTHONPATH", "")]), MINIGPT2_NUM_THREADS="1",
                   PYTHONWARNINGS="ignore")
        setup = textwrap.dedent(f'''
            import inspect, os, minigpt2
            from minigpt2 import GPT2LMHeadModel, AutoTokenizer
            GPT2LMHeadModel.from_pretrained({str(tiny)!r}).save_pretrained("my-checkpoint")
            tok = AutoTokenizer.from_pretrained("gpt2")
            tok.chat_template = "{{% for m in messages %}}{{{{ m['role'] }}}}: {{{{ m['content'] }}}}\\n{{% endfor %}}"
            tok.save_pretrained("my-chat-gpt2")
            with open("corpus.txt", "w", encoding="utf-8") as f:
                f.write(inspect.getdoc(minigpt2.GPT2LMHeadModel.generate) * 40)
        ''')
        subprocess.run([sys.executable, "-c", setup], cwd=work, env=env, check=True, timeout=120)
        yield work, env


def test_the_docs_have_python_blocks():
    assert len(BLOCKS) >= 15, BLOCKS  # the extraction itself works
    for doc, edits in SHORTER.items():
        code = "\n".join(c for d, _, c in BLOCKS if d == doc)
        for old, _ in edits:
            assert old in code, f"{doc} no longer has {old!r}: update SHORTER"


@pytest.mark.parametrize("doc,line,code", BLOCKS, ids=[f"{d}:{n}" for d, n, _ in BLOCKS])
def test_python_block_runs(doc, line, code, docs_env):
    if (doc, line) in SKIP:
        pytest.skip(SKIP[(doc, line)])
    if "chat_template" in code:
        pytest.importorskip("jinja2", reason="chat templates need jinja2 (optional, as in transformers)")
    if "set_kernel(\"avx2\")" in code:
        import minigpt2
        if not minigpt2.backend.c_available() or "avx2" not in minigpt2.backend.kernel_variants():
            code = code.replace('set_kernel("avx2")', 'set_kernel("auto")')
    for old, new in SHORTER.get(doc, []):
        code = code.replace(old, new)
    work, env = docs_env
    result = subprocess.run([sys.executable, "-c", RUNNER], input=json.dumps([code, PRELUDE]), cwd=work, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (f"the block at {doc}:{line} fails as a user would run it:\n{code}\n"
                                    f"--- stderr ---\n{result.stderr[-3000:]}")


def test_show_work_transcript():
    """docs/tokenizer.md's `>>> print(show_work(...))` prints what the page shows (its `...` elides lines)."""
    (doc, _, text), = [b for b in code_blocks("text") if ">>> print(show_work(" in b[2]]
    lines = text.split("\n")
    call = lines[1][len(">>> "):]
    from minigpt2.tokenizer import show_work  # noqa: F401  (the transcript's own import)
    printed = str(eval(call.replace("print(", "str(", 1))).split("\n")
    shown = [l for l in lines[2:] if l.strip()]
    at = 0
    for want in shown:
        if want.strip() == "...":
            continue
        while at < len(printed) and printed[at] != want:
            at += 1
        assert at < len(printed), f"{doc}: show_work no longer prints {want!r}:\n" + "\n".join(printed)
        at += 1
