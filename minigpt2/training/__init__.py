"""Training GPT-2 in NumPy.

    grad.py      the model's forward with saved activations, and its backward (model.loss_and_grad)
    optim.py     AdamW (no decay on biases and layer norms), warmup + cosine schedule, gradient clipping
    data.py      text -> a memory-mapped token file, train/val split, random batches
    trainer.py   the loop: accumulation, evaluation, samples, progress, checkpoints, resume, Ctrl-C
    cli.py       ``python -m minigpt2 train ...``

The per-layer backward passes are in minigpt2/backward.py, beside layers.py.

The names below are imported when first used (PEP 562), not with the package: ``python -m minigpt2 train`` imports
cli.py alone first, so a Ctrl-C while the rest loads reaches the command's own handler ("[interrupted]", exit
130), not Python's traceback.
"""
import importlib

# name -> the module defining it
_WHERE = {"load_tokens": "data", "prepare_tokens": "data", "random_batch": "data", "AdamW": "optim",
          "clip_grad_norm": "optim", "lr_at": "optim", "Trainer": "trainer", "TrainingArguments": "trainer",
          "make_trainable": "trainer"}
_MODULES = ("cli", "data", "grad", "optim", "trainer")

__all__ = ["AdamW", "clip_grad_norm", "lr_at", "prepare_tokens", "load_tokens", "random_batch", "Trainer",
           "TrainingArguments", "make_trainable"]


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    if name in _MODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__) | set(_MODULES))
