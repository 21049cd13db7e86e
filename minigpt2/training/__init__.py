"""Training GPT-2 in NumPy.

    grad.py      the model's forward with saved activations, and its backward (model.loss_and_grad)
    optim.py     AdamW (no decay on biases and layer norms), warmup + cosine schedule, gradient clipping
    data.py      text -> a memory-mapped token file, train/val split, random batches
    trainer.py   the loop: accumulation, evaluation, samples, progress, checkpoints, resume, Ctrl-C
    cli.py       ``python -m minigpt2 train ...``

The per-layer backward passes are in minigpt2/backward.py, beside layers.py.
"""
from .data import load_tokens, prepare_tokens, random_batch
from .optim import AdamW, clip_grad_norm, lr_at
from .trainer import Trainer, TrainingArguments, make_trainable

__all__ = ["AdamW", "clip_grad_norm", "lr_at", "prepare_tokens", "load_tokens", "random_batch", "Trainer",
           "TrainingArguments", "make_trainable"]
