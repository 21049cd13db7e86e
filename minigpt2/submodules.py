"""HF's submodules as views of a model's parameters: ``model.transformer.wte.weight``,
``model.transformer.h[0].attn.c_attn.weight``, ``model.transformer.ln_f.bias``, a head's ``model.score.weight``.

minigpt2 keeps a model's parameters as one nested dict named like the checkpoint (``params["h"][0]["attn"]
["c_attn"]["weight"]``); transformers users reach the same arrays through torch modules. A view walks the dict
by attribute: a dict is a view, a list of blocks (``h``) a list of views, an array itself. The arrays are the
model's own, not copies: ``weight[...] = ...`` changes the model, as an in-place change of an HF parameter does,
where the array is writable (a model made in memory, or trained; from_pretrained's arrays are read-only views of
the checkpoint file). Assigning an attribute is refused, with what to do instead: the model would never read it.
"""
from __future__ import annotations

__all__ = ["Submodule", "view"]


class Submodule:
    """Part of a model's parameters, by HF's module names: its attributes are the parts' names (``dir()`` lists
    them), giving sub-views, lists of them, or the weight and bias arrays."""

    def __init__(self, tree: dict, path: str):
        object.__setattr__(self, "_tree", tree)
        object.__setattr__(self, "_path", path)

    def __getattr__(self, name):
        tree = object.__getattribute__(self, "_tree")
        if name.startswith("__") or name not in tree:
            raise AttributeError(f"{self._path} has no {name!r}; it has {', '.join(tree)}")
        return view(tree[name], f"{self._path}.{name}")

    def __setattr__(self, name, value):
        raise AttributeError(f"{self._path}.{name} cannot be assigned (a view of the model's parameters): change "
                             f"a writable array in place ({self._path}.{name}[...] = ...) or replace it with model.load_state_dict()")

    def __dir__(self):
        return list(self._tree)

    def __repr__(self):
        parts = ", ".join(f"{name}={_describe(part)}" for name, part in self._tree.items())
        return f"{type(self).__name__}({self._path}: {parts})"


def _describe(part) -> str:
    if isinstance(part, dict):
        return "{" + ", ".join(part) + "}"
    if isinstance(part, list):
        return f"[{len(part)} blocks]"
    return f"{getattr(part, 'dtype', '')}{list(getattr(part, 'shape', ()))}"


def view(part, path: str):
    """A dict of parameters as a Submodule, a list of them (the blocks, ``h``) as a list of Submodules named
    path.0, path.1, ...; an array (or a narrow weight) as itself."""
    if isinstance(part, dict):
        return Submodule(part, path)
    if isinstance(part, list):
        return [view(block, f"{path}.{i}") for i, block in enumerate(part)]
    return part
