"""Write docs/api.md, the API reference, from the docstrings and signatures of minigpt2's public names.

    python docs/make_api.py            # rewrite docs/api.md
    python docs/make_api.py --check    # exit 1 if docs/api.md differs from what the code says now

A module's public names are its ``__all__``; a module without one contributes the functions, classes and
constants defined in it whose names do not start with "_". For classes, every public method and property
defined on the class is listed with its signature and docstring. Nothing is written by hand in api.md, so
it cannot drift from the code: change a docstring, rerun this script.
"""
from __future__ import annotations

import importlib
import inspect
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "api.md")

# (module, one-line description), in the order a reader meets them (docs/architecture.md).
MODULES = [
    ("minigpt2", "The package: the names most programs need, as in transformers."),
    ("minigpt2.config", "GPT2Config and the preset sizes."),
    ("minigpt2.modeling", "The transformer block, GPT2Model, the language-model heads."),
    ("minigpt2.pretrained", "What every model class shares: loading, saving, the state dict, the weight format."),
    ("minigpt2.task_heads", "Sequence and token classification, question answering."),
    ("minigpt2.layers", "The NumPy layers."),
    ("minigpt2.weights", "Weight formats: float32, float16, bfloat16, int8, and widen()."),
    ("minigpt2.activations", "Activation functions by HF's names."),
    ("minigpt2.cache", "past_key_values."),
    ("minigpt2.outputs", "Output dataclasses."),
    ("minigpt2.tokenizer", "GPT-2's tokenizer with HF's interface."),
    ("minigpt2.bpe", "The byte-level BPE algorithm."),
    ("minigpt2.generation", "generate() and its logits processors."),
    ("minigpt2.streamers", "Text while it is generated."),
    ("minigpt2.auto", "HF's Auto classes."),
    ("minigpt2.checkpoint", "safetensors reading and writing."),
    ("minigpt2.hub", "Local directories and the Hugging Face Hub."),
    ("minigpt2.tracing", "Capturing named intermediate tensors."),
    ("minigpt2.checks", "Checking arguments: one place for every entry point's errors."),
    ("minigpt2.backend", "NumPy or the C core."),
    ("minigpt2.cli", "python -m minigpt2."),
]


def public_names(module):
    if hasattr(module, "__all__"):
        return list(module.__all__)
    names = []
    for name, value in vars(module).items():
        if name.startswith("_") or inspect.ismodule(value):
            continue
        defined_here = getattr(value, "__module__", module.__name__) == module.__name__
        if (inspect.isfunction(value) or inspect.isclass(value)) and not defined_here:
            continue  # imported from elsewhere
        if not (inspect.isfunction(value) or inspect.isclass(value)) and not name.isupper():
            continue  # only UPPER_CASE constants
        names.append(name)
    return names


class _Raw:
    """An annotation written as a string (``from __future__ import annotations``), shown without quotes."""

    def __init__(self, text):
        self.text = text

    def __repr__(self):
        return self.text


def signature(obj, drop_self=False) -> str:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return "(...)"
    raw = lambda a: _Raw(a.strip("'\"")) if isinstance(a, str) else a
    params = [p.replace(annotation=raw(p.annotation)) for p in sig.parameters.values()]
    if drop_self and params and params[0].name == "self":
        params = params[1:]
    return str(sig.replace(parameters=params, return_annotation=raw(sig.return_annotation)))


def doc(obj) -> str:
    text = inspect.getdoc(obj)
    return text.strip() + "\n" if text else ""


def constant(value) -> str:
    text = re.sub(r"<(?:function|class|built-in function) ([\w.]+)(?: at 0x[0-9a-f]+)?>", r"\1", repr(value))
    text = re.sub(r" at 0x[0-9a-f]+", "", text)  # no memory addresses: the output must be reproducible
    package_dir = os.path.dirname(os.path.abspath(importlib.import_module("minigpt2").__file__))
    text = text.replace(package_dir, "<minigpt2>")  # nor where this checkout happens to live
    return text if len(text) <= 120 else text[:117] + "..."


def describe_class(qualname, cls, home=None) -> list:
    """A class and its public members, with those of its parts: bases defined in the documented package's
    submodules and not public themselves (GPT2Tokenizer's Vocabulary, Encoding, ... in minigpt2.tokenizer.*)."""
    kind = "class"
    lines = [f"### {kind} `{qualname}{signature(cls) if cls.__init__ is not object.__init__ else '()'}`\n",
             doc(cls)]
    bases = [b.__name__ for b in cls.__bases__ if b is not object]
    if bases:
        lines.insert(1, f"Bases: {', '.join(f'`{b}`' for b in bases)}\n")
    members, seen = [], set()
    public = set(public_names(importlib.import_module(home))) if home else set()
    documented = {c for b in cls.__mro__[1:] if b.__name__ in public for c in b.__mro__}  # listed with b
    parts = [b for b in cls.__mro__[1:] if home and b.__module__.startswith(home + ".") and b not in documented]
    for name, value in [item for c in (cls, *parts) for item in vars(c).items()]:
        if (name.startswith("_") and name not in ("__call__",)) or name in seen:
            continue
        seen.add(name)
        if isinstance(value, property):
            members.append(f"- **`{name}`** (property)" + _colon(first_paragraph(value)))
        elif isinstance(value, (classmethod, staticmethod)):
            fn = value.__func__
            label = "classmethod" if isinstance(value, classmethod) else "staticmethod"
            members.append(f"- **`{name}{signature(getattr(cls, name))}`** ({label})" + _colon(first_paragraph(fn)))
        elif inspect.isfunction(value):
            members.append(f"- **`{name}{signature(value, drop_self=True)}`**" + _colon(first_paragraph(value)))
    if members:
        lines.append("\n" + "\n".join(members) + "\n")
    return lines


def first_paragraph(obj) -> str:
    text = inspect.getdoc(obj) or ""
    return " ".join(text.split("\n\n")[0].split())


def _colon(text) -> str:
    return f": {text}" if text else ""


def render() -> str:
    out = ["# API reference\n",
           "Generated by `python docs/make_api.py` from the docstrings and signatures in `minigpt2/`; do not edit",
           "by hand. Every name below is public: in a module's `__all__`, or (for modules without one) defined in",
           "it without a leading underscore. Names re-exported by `minigpt2` are documented where they are defined.",
           "See [architecture.md](architecture.md) for how the pieces fit together.\n"]
    out.append("## Contents\n")
    for module_name, summary in MODULES:
        anchor = module_name.replace(".", "")
        out.append(f"- [`{module_name}`](#{anchor}): {summary}")
    out.append("")
    for module_name, summary in MODULES:
        module = importlib.import_module(module_name)
        out.append(f"## `{module_name}`\n")
        out.append(f"{summary}\n")
        if module_name == "minigpt2":
            rows = []
            for name in public_names(module):
                value = getattr(module, name)
                home = value.__name__ if inspect.ismodule(value) else getattr(value, "__module__", module_name)
                rows.append(f"| `minigpt2.{name}` | `{home}` |")
            out += ["| name | defined in |", "|---|---|", *rows, ""]
            out.append(f"`minigpt2.__version__` = `{module.__version__}`\n")
            continue
        out.append(doc(module))
        for name in public_names(module):
            value = getattr(module, name)
            qualname = f"{module_name}.{name}"
            if inspect.isclass(value):
                out += describe_class(qualname, value, module_name)
            elif callable(value):
                out += [f"### `{qualname}{signature(value)}`\n", doc(value)]
            else:
                out += [f"### `{qualname}`\n", f"`{constant(value)}`\n"]
    return "\n".join(out).rstrip() + "\n"


def main(argv) -> int:
    text = render()
    if "--check" in argv:
        current = open(OUT, encoding="utf-8").read() if os.path.exists(OUT) else ""
        if current != text:
            print("docs/api.md is out of date with the docstrings. It is generated, so whoever changed a docstring "
                  "may regenerate it: python docs/make_api.py && git add docs/api.md", file=sys.stderr)
            return 1
        return 0
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {os.path.relpath(OUT)} ({text.count(chr(10))} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
