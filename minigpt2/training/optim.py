"""AdamW, the learning-rate schedule and gradient clipping: the few lines every training loop needs.

The parameters are a flat dict name -> float32 array (model.state_dict(): the arrays are the model's own,
so updating them in place updates the model); the gradients a dict with the same keys.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["AdamW", "decays", "lr_at", "clip_grad_norm"]

FLOAT32_MAX = float(np.finfo(np.float32).max)


def decays(name, array) -> bool:
    """Weight decay applies to the matrices (linear weights, embeddings), never to biases or layer norms.

    Every array of 2 or more dimensions is a matrix; biases and layer-norm gains and shifts are vectors."""
    return array.ndim >= 2


class AdamW:
    """Adam with decoupled weight decay (Loshchilov & Hutter), as torch.optim.AdamW computes it, with torch's
    defaults (lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 0.01; the Trainer passes nanoGPT's).

    For each parameter p with gradient g, at step t (from 1):
        p = p * (1 - lr * weight_decay)          (only for matrices, see decays())
        m = beta1 m + (1 - beta1) g              the running mean of g
        v = beta2 v + (1 - beta2) g^2            the running mean of g^2
        p = p - lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)

    ``params``: name -> float32 array, updated in place (model.state_dict() after make_trainable(model)). An
    array listed under two names (the tied lm_head.weight is transformer.wte.weight) is one parameter, updated
    once under its first name, as torch's model.parameters() lists a tied weight once.
    """

    def __init__(self, params: dict, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        # torch.optim.AdamW's checks: a beta of 1 divides by 1 - beta^t = 0, a negative lr or decay climbs the loss
        for name, value, allowed in (("lr", lr, "a number >= 0"), ("eps", eps, "a number >= 0"),
                                     ("weight_decay", weight_decay, "a number >= 0")):
            if not 0.0 <= value:  # (False for NaN too)
                raise ValueError(f"AdamW: {name} must be {allowed}, got {value!r}")
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise ValueError(f"AdamW: betas must be a pair (beta1, beta2), got {betas!r}")
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"AdamW: betas[{i}] must be in [0, 1), got {beta!r}")
        self.params = {}
        for name, p in params.items():
            if not (isinstance(p, np.ndarray) and p.dtype in (np.float32, np.float64) and p.flags.writeable):
                what = f"a read-only {p.dtype} array" if isinstance(p, np.ndarray) and not p.flags.writeable \
                    else getattr(p, "dtype", type(p).__name__)
                raise TypeError(f"AdamW updates the parameters in place and needs writable float32 (or float64) "
                                f"arrays; {name} is {what} (a loaded checkpoint's weights are memory-mapped, read-only, "
                                f"and may be "
                                f"16-bit or int8): call minigpt2.training.make_trainable(model) first, then pass "
                                f"model.state_dict()")
            if all(p is not q for q in self.params.values()):  # (a second name for the same array: skipped)
                self.params[name] = p
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.m = {k: np.zeros_like(p) for k, p in self.params.items()}
        self.v = {k: np.zeros_like(p) for k, p in self.params.items()}
        self.t = 0

    def step(self, grads: dict, lr=None):
        lr = self.lr if lr is None else lr
        b1, b2 = self.betas
        missing = [k for k in self.params if k not in grads]
        if missing:
            raise ValueError(f"AdamW.step: no gradient for {missing[:3]} ({len(missing)} of {len(self.params)} "
                             f"parameters); pass loss_and_grad's dict, keyed like the parameters")
        # (as torch refuses a gradient of another shape when it is assigned: checked before anything moves)
        for k, p in self.params.items():
            g = grads[k]
            if not (isinstance(g, np.ndarray) and g.shape == p.shape):
                what = f"shape {g.shape}" if isinstance(g, np.ndarray) else f"a {type(g).__name__}"
                raise ValueError(f"AdamW.step: the gradient of {k} is {what}, the parameter an array of shape "
                                 f"{p.shape}; no weight was changed")
        t = self.t + 1
        correction1, correction2 = 1 - b1 ** t, 1 - b2 ** t
        step_size = lr / correction1
        if not abs(step_size) <= FLOAT32_MAX:  # (torch's addcdiv_ refuses it too: a RuntimeError, weights untouched)
            raise ValueError(f"AdamW.step: the step size lr / (1 - beta1^t) = {step_size:.4g} (lr {lr:.4g}, t {t}) "
                             f"is beyond float32's largest value {FLOAT32_MAX:.4g}, as torch.optim.AdamW refuses it; "
                             f"lower the learning rate")
        self.t = t
        # (errstate: as torch's AdamW, no warnings when a learning rate far too high overflows float32 in the decay or
        # the update; the weights become inf or NaN, which the Trainer checks after each step and says in one line)
        with np.errstate(all="ignore"):
            for k, p in self.params.items():
                g, m, v = grads[k], self.m[k], self.v[k]
                if self.weight_decay and decays(k, p):
                    p *= np.float32(1 - lr * self.weight_decay)
                m *= np.float32(b1)
                m += np.float32(1 - b1) * g
                v *= np.float32(b2)
                v += np.float32(1 - b2) * (g * g)
                denom = np.sqrt(v) / np.float32(math.sqrt(correction2)) + np.float32(self.eps)
                p -= np.float32(step_size) * (m / denom)

    def state_dict(self) -> dict:
        """Everything needed to resume: the step count and both moments, as flat arrays."""
        state = {"t": np.array(self.t, np.int64)}
        state.update({f"m.{k}": a for k, a in self.m.items()})
        state.update({f"v.{k}": a for k, a in self.v.items()})
        return state

    def load_state_dict(self, state: dict):
        missing = [k for k in self.params if f"m.{k}" not in state or f"v.{k}" not in state]
        if missing or "t" not in state:
            raise ValueError(f"the optimizer state does not match the model: no moments for {missing[:3]}")
        for k, p in self.params.items():
            for moments, prefix in ((self.m, "m."), (self.v, "v.")):
                a = np.asarray(state[prefix + k], p.dtype)  # (float32, or float64 for float64 parameters)
                if a.shape != p.shape:
                    raise ValueError(f"the optimizer state for {k} has shape {a.shape}, the parameter {p.shape}")
                moments[k] = np.array(a)
        self.t = int(state["t"])


def lr_at(step, *, max_lr, warmup_steps, max_steps, min_lr=None):
    """The learning rate at ``step`` (from 0): linear warmup to max_lr, then cosine decay to min_lr.

    min_lr defaults to max_lr / 10 (nanoGPT's choice). After max_steps it stays at min_lr.
    """
    if not step >= 0:
        raise ValueError(f"lr_at: step must be >= 0 (steps count from 0), got {step!r}")
    min_lr = max_lr / 10 if min_lr is None else min_lr
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= max_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)  # 0 -> 1
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)


def clip_grad_norm(grads: dict, max_norm) -> float:
    """Scale all gradients together so their global L2 norm is at most max_norm (in place, as torch's
    clip_grad_norm_: factor max_norm / (norm + 1e-6), only when below 1). Returns the norm before clipping.

    An array listed under two names (loss_and_grad's lm_head.weight is wte's gradient) counts once."""
    unique = list({id(g): g for g in grads.values()}.values())
    norm = math.sqrt(sum(float(np.dot(g.reshape(-1), g.reshape(-1))) for g in unique))
    factor = max_norm / (norm + 1e-6)
    if not factor >= 1.0:  # (a NaN norm too: every gradient becomes NaN, as torch's, not left as it was)
        with np.errstate(invalid="ignore"):  # (an infinite gradient times 0 is NaN, as in torch)
            for g in unique:
                g *= np.float32(factor)
    return norm
