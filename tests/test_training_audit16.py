"""Training audit 16, against transformers 4.57 + torch autograd on the same weights (float32, eager attention):

1. loss_and_grad took only part of what transformers' forward takes for its loss: labels of -100 were ignored and
   num_items_in_batch was read, but ``ignore_index`` (ForCausalLMLoss's: another value to ignore) and
   ``shift_labels`` (targets already shifted: the labels of packed sequences) were a TypeError, and a 4-D
   attention_mask (the float bias [B or 1, 1, T, T] added to the scores, which transformers' forward and
   minigpt2's forward take) was refused by the 0/1 check of a 2-D mask.
2. A checkpoint save cut short by a full disk was not all-or-nothing: each file was renamed into place as soon as it
   was written (and the tokenizer's were written over in place), so a disk that filled while the optimizer's moments
   were written left model.safetensors of the new step beside trainer_state.json of the earlier one (a resume then
   refused the weights), and one that filled in the tokenizer's files left vocab.json cut short. The disk is
   simulated: ``open`` for writing under --out gets a file whose writes stop with OSError(ENOSPC) once a byte budget
   is spent (the part that fits is written, as a real full disk does).

Tolerances: GRAD_RTOL of test_training.py (max|ours - torch| <= 1e-4 x max|torch| per tensor; derived there from
float32's unit roundoff u = 6e-8, sums of ~1200 terms (sqrt(n) u = 2e-6) chained through a few layers, amplified
~10x by softmax and layer norm). The losses within 1e-5 x max(1, |loss|): one float32 reduction of ~30 terms in
another order, a few u, and the logits' own error of ~1e-6 relative. A 4-D mask adds one rounding per score (the
bias added, as torch adds it), far inside both bounds. The checkpoint tests compare bytes: exact.
"""
from __future__ import annotations

import builtins
import errno
import json
import os

import numpy as np
import pytest

import minigpt2
from minigpt2.training.grad import model_loss_and_grad
from test_training import GRAD_RTOL, batch, corpus, tiny_trainer, torch_model  # noqa: F401 (corpus: a fixture)
from test_training_more import assert_torch_grads, ours_from

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

LOSS_RTOL = 1e-5
MIN = np.finfo(np.float32).min  # what transformers masks with


def assert_matches_torch(hf, model, ids, labels, *, attention_mask=None, position_ids=None, **loss_options):
    """transformers' loss.backward() against loss_and_grad on the same inputs and loss options, every parameter."""
    hf.zero_grad()
    tensors = {k: torch.tensor(v) for k, v in dict(attention_mask=attention_mask, position_ids=position_ids,
                                                    shift_labels=loss_options.get("shift_labels")).items()
               if v is not None}
    options = {k: v for k, v in loss_options.items() if k != "shift_labels"}
    out = hf(torch.tensor(ids), labels=torch.tensor(labels), **tensors, **options)
    out.loss.backward()
    loss, grads = model_loss_and_grad(model, ids, labels=labels, attention_mask=attention_mask,
                                      position_ids=position_ids, **loss_options)
    ref_loss = out.loss.item()
    assert abs(loss - ref_loss) <= LOSS_RTOL * max(1.0, abs(ref_loss)), (loss, ref_loss)
    assert_torch_grads(hf, grads)
    return loss, grads


# -- 1. HF's loss options and 4-D masks in loss_and_grad ------------------------------------------------------------

@pytest.mark.parametrize("ignore_index", [-100, -1, 0, 5])
def test_ignore_index_as_transformers(ignore_index):
    """Labels equal to ignore_index are not counted (0 and 5 are token ids: those tokens are then never learnt)."""
    hf = torch_model(40)
    model = ours_from(hf)
    ids, labels, mask = batch(40, padding=True)
    if ignore_index >= 0:  # a token id: where that token is a label, it is not counted
        ids[2, 3] = labels[2, 3] = ignore_index
    labels = np.where(labels == -100, ignore_index, labels)
    labels[0, 4] = ignore_index
    assert_matches_torch(hf, model, ids, labels, attention_mask=mask, ignore_index=ignore_index)


def test_ignore_index_with_num_items_in_batch_as_transformers():
    hf = torch_model(41)
    model = ours_from(hf)
    ids, labels, _ = batch(41, padding=False)
    labels = np.where(labels == -100, -1, labels)
    assert_matches_torch(hf, model, ids, labels, ignore_index=-1, num_items_in_batch=50)


def test_a_label_of_minus_100_with_another_ignore_index_is_refused_as_the_forward_refuses_it():
    """torch's cross_entropy(ignore_index=-1) fails on a target of -100 (out of range): so do both of ours."""
    model = ours_from(torch_model(42))
    ids, labels, _ = batch(42, padding=False)
    assert (labels == -100).any()
    with pytest.raises(ValueError, match=r"labels holds -100, outside the allowed values \[0, 37\) or -1"):
        model(ids, labels=labels, ignore_index=-1)
    with pytest.raises(ValueError, match=r"labels holds -100, outside the allowed values \[0, 37\) or -1"):
        model.loss_and_grad(ids, labels=labels, ignore_index=-1)
    with pytest.raises(ValueError, match="ignore_index must be an integer, got 1.5"):
        model(ids, labels=ids, ignore_index=1.5)
    with pytest.raises(ValueError, match="ignore_index must be an integer, got 1.5"):
        model.loss_and_grad(ids, ignore_index=1.5)


def test_shift_labels_as_transformers():
    """shift_labels are the targets of the positions themselves (already shifted: nothing moves); labels are then
    not read, in transformers (which needs them given, to compute a loss at all) as in loss_and_grad."""
    hf = torch_model(43)
    model = ours_from(hf)
    ids, labels, mask = batch(43, padding=True)
    shift = np.full_like(labels, -100)
    shift[:, :-1] = labels[:, 1:]
    shift[1, 5] = ids[1, 2]  # (any target: not necessarily the next token)
    _, grads = assert_matches_torch(hf, model, ids, labels, attention_mask=mask, shift_labels=shift)
    other = np.random.default_rng(0).integers(0, 37, ids.shape)  # labels that would give another loss
    _, unread = model_loss_and_grad(model, ids, labels=other, attention_mask=mask, shift_labels=shift)
    for name in grads:
        np.testing.assert_array_equal(unread[name], grads[name], err_msg=name)
    with pytest.raises(ValueError, match=r"shift_labels must have the shape of input_ids \(3, 11\)"):
        model.loss_and_grad(ids, shift_labels=shift[:, :-1])


def test_shift_labels_ignore_index_and_num_items_in_batch_together():
    hf = torch_model(44)
    model = ours_from(hf)
    ids, labels, _ = batch(44, padding=False)
    shift = np.full_like(labels, 3)
    shift[:, :-2] = ids[:, 2:]  # two tokens ahead, 3 (a token id) ignored
    assert_matches_torch(hf, model, ids, labels, shift_labels=shift, ignore_index=3, num_items_in_batch=40)


def causal_padding_mask(padding):
    """The 4-D mask transformers builds from a 2-D padding mask [B, T]: 0 where causal and not padding, else the
    float32 minimum.  # -> [B, 1, T, T]"""
    T = padding.shape[1]
    allowed = np.tril(np.ones((T, T), bool))[None, None] & (padding[:, None, None, :] == 1)
    return np.where(allowed, 0.0, MIN).astype(np.float32)


def test_4d_mask_transformers_builds_from_padding():
    """The same gradients as the 2-D mask it stands for; labels at every position, padded ones included (a padded
    query sees only masked keys, and spreads its attention over those up to itself, in torch as here)."""
    hf = torch_model(45)
    model = ours_from(hf)
    ids, _, mask = batch(45, padding=True)
    _, grads = assert_matches_torch(hf, model, ids, ids, attention_mask=causal_padding_mask(mask))
    _, grads_2d = model_loss_and_grad(model, ids, labels=ids, attention_mask=mask)
    for name in grads:  # (the same computation, but the 4-D bias is added where the 2-D mask's is broadcast)
        bound = GRAD_RTOL * float(np.abs(grads_2d[name]).max())
        assert float(np.abs(grads[name] - grads_2d[name]).max()) <= bound, name


def test_4d_mask_of_packed_sequences_as_transformers():
    """Three documents packed in each row: a block-diagonal causal mask, positions restarting at each document,
    shift_labels ignoring the token across each boundary. The loss is that of the documents trained one by one."""
    hf = torch_model(46)
    model = ours_from(hf)
    rng = np.random.default_rng(46)
    B, T = 2, 12
    ids = rng.integers(0, 37, (B, T))
    cuts = [[0, 4, 9, 12], [0, 5, 7, 12]]
    doc = np.zeros((B, T), np.int64)
    position_ids = np.zeros((B, T), np.int64)
    for b, c in enumerate(cuts):
        for d, (start, end) in enumerate(zip(c, c[1:])):
            doc[b, start:end], position_ids[b, start:end] = d, np.arange(end - start)
    allowed = (doc[:, None, :, None] == doc[:, None, None, :]) & np.tril(np.ones((T, T), bool))
    mask = np.where(allowed, 0.0, MIN).astype(np.float32)  # [B, 1, T, T]
    shift = np.full((B, T), -100)
    same_doc = doc[:, 1:] == doc[:, :-1]
    shift[:, :-1] = np.where(same_doc, ids[:, 1:], -100)
    loss, _ = assert_matches_torch(hf, model, ids, ids, attention_mask=mask, position_ids=position_ids,
                                   shift_labels=shift)
    total = sum(float(model(ids[b:b + 1, s:e], labels=ids[b:b + 1, s:e]).loss) * (e - s - 1)
                for b, c in enumerate(cuts) for s, e in zip(c, c[1:]))
    assert abs(loss - total / int((shift != -100).sum())) <= LOSS_RTOL * abs(loss)


def test_4d_soft_bias_broadcast_over_the_batch_as_transformers():
    """A finite bias of any size (here an ALiBi-like distance penalty), one [1, 1, T, T] for every row."""
    hf = torch_model(47)
    model = ours_from(hf)
    ids, labels, _ = batch(47, padding=False)
    T = ids.shape[1]
    distance = np.arange(T)[:, None] - np.arange(T)[None, :]
    bias = (-0.5 * np.maximum(distance, 0)).astype(np.float32)[None, None]
    assert_matches_torch(hf, model, ids, labels, attention_mask=bias)


def test_a_4d_mask_is_checked_as_the_forward_checks_it():
    model = ours_from(torch_model(48))
    ids, _, mask = batch(48, padding=True)
    as_ints = (causal_padding_mask(mask) == 0).astype(np.int64)
    with pytest.raises(ValueError, match="4-D attention_mask is added to the attention scores"):
        model.loss_and_grad(ids, attention_mask=as_ints)
    with pytest.raises(ValueError, match=r"4-D attention_mask must have shape \(batch=3 or 1, 1, query=11 or 1"):
        model.loss_and_grad(ids, attention_mask=causal_padding_mask(mask)[:, :, :, :-1])


# -- 2. a full disk in the middle of a save ------------------------------------------------------------------------

class FullDisk:
    """``open`` for writing under ``root``, with a budget of bytes (None: unlimited); counts what each file got."""

    def __init__(self, monkeypatch, root):
        self.root, self.budget, self.writes = os.path.abspath(root) + os.sep, None, []
        real_open = builtins.open
        disk = self

        class File:
            def __init__(self, f, path):
                self._f, self._path = f, path

            def write(self, data):
                if disk.budget is not None and len(data) > disk.budget:
                    self._f.write(data[:disk.budget])  # what fits, then the error a full disk gives (no file name)
                    disk.budget = 0
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                if disk.budget is not None:
                    disk.budget -= len(data)
                disk.writes.append((self._path, len(data)))
                return self._f.write(data)

            def __getattr__(self, name):
                return getattr(self._f, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return self._f.__exit__(*exc)

        def fake_open(file, mode="r", *args, **kwargs):
            f = real_open(file, mode, *args, **kwargs)
            inside = isinstance(file, (str, os.PathLike)) and os.path.abspath(file).startswith(self.root)
            return File(f, os.fspath(file)) if inside and any(c in mode for c in "wax+") else f

        monkeypatch.setattr(builtins, "open", fake_open)


def files_of(out) -> dict:
    """Every file under ``out`` but the tokenized data and the lock, with its bytes."""
    found = {}
    for folder, dirs, names in os.walk(out):
        dirs[:] = [d for d in dirs if d != "data"]
        for name in names:
            if name != ".train.lock":
                path = os.path.join(folder, name)
                with open(path, "rb") as f:
                    found[os.path.relpath(path, out)] = f.read()
    return found


def test_a_save_cut_short_by_a_full_disk_leaves_the_earlier_checkpoint_whole(tmp_path, corpus, monkeypatch):
    """The disk fills half-way through each file a save writes, in turn: every time, --out holds the checkpoint of
    the earlier save byte for byte (nothing more), and the run resumes from it."""
    trainer, _ = tiny_trainer(tmp_path, corpus, max_steps=3)
    trainer.train()  # saves step 3
    out = trainer.args.out_dir
    saved = files_of(out)
    assert json.loads(saved["trainer_state.json"])["step"] == 3
    trainer.train_step()
    trainer.train_step()  # step 5, not saved
    disk = FullDisk(monkeypatch, out)
    trainer.save()  # the whole save, counted
    writes = [(path, n) for path, n in disk.writes if n]
    assert json.loads(files_of(out)["trainer_state.json"])["step"] == 5
    for name, content in files_of(out).items():  # (back to step 3's checkpoint)
        os.remove(os.path.join(out, name))
    for name, content in saved.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(content)
    trainer.saved_step = 3
    files = {}  # each file's first write and its size: the disk fills half-way through it
    before = 0
    for path, n in writes:
        first, size = files.get(path, (before, 0))
        files[path] = (first, size + n)
        before += n
    assert len(files) >= 5, files  # weights, config, tokenizer, optimizer, state
    for path, (first, size) in files.items():
        disk.budget = first + size // 2
        with pytest.raises(OSError) as failed:
            trainer.save()
        assert failed.value.errno == errno.ENOSPC, failed.value
        assert files_of(out) == saved, f"the disk filled while writing {path}: --out changed"
        assert trainer.saved_step == 3
    disk.budget = None
    resumed = minigpt2.GPT2LMHeadModel.from_pretrained(out)
    from minigpt2.training import Trainer

    again = Trainer(resumed, trainer.tokenizer, trainer.tokens, trainer.args, log=lambda *a: None)
    again.load_state(out)
    assert again.step == 3


def test_train_on_a_disk_that_fills_during_a_save_says_so_in_a_line_and_resumes(tmp_path, corpus, monkeypatch,
                                                                                 capsys):
    """The CLI: the second save (step 6) fills the disk half-way through the optimizer's moments (the weights are
    written by then). One line names --out, the cause and the step --out keeps; --resume continues from it."""
    from minigpt2.training import trainer as trainer_module
    from minigpt2.training.cli import main

    out = tmp_path / "out"
    argv = ["--data", str(corpus), "--out", str(out), "--n-layer", "1", "--n-head", "2", "--n-embd", "16",
            "--seq-len", "8", "--batch-size", "2", "--eval-batches", "1", "--sample-tokens", "0", "--log-interval",
            "1", "--eval-interval", "3"]
    disk = FullDisk(monkeypatch, out)
    real_save, saves = trainer_module.Trainer.save, []

    def save(self):
        saves.append(self.step)
        if len(saves) == 2:  # room for the weights and half the moments (twice the weights): not for all of it
            disk.budget = os.path.getsize(out / "model.safetensors") * 2
        real_save(self)

    monkeypatch.setattr(trainer_module.Trainer, "save", save)
    assert main(argv + ["--max-steps", "6"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"--out {out} cannot be used: No space left on device" in err, err
    assert f"{out} keeps the checkpoint of step 3" in err, err
    assert json.loads((out / "trainer_state.json").read_text())["step"] == 3
    assert not [n for n in os.listdir(out) if n.startswith(".")], os.listdir(out)  # no temporary file, no lock
    disk.budget = None
    monkeypatch.setattr(trainer_module.Trainer, "save", real_save)
    assert main(["--out", str(out), "--resume", "--max-steps", "6"]) == 0, capsys.readouterr().err
    assert json.loads((out / "trainer_state.json").read_text())["step"] == 6
