"""Checkpoint interoperability with transformers, both ways, as a transformers user exercises it.

Every class's checkpoint written by transformers loads into every other class in minigpt2, and minigpt2 reports
what transformers reports (``output_loading_info=True``: the same missing, unexpected and mismatched keys; a
warning exactly when transformers warns that weights were newly initialised). Re-saving a transformers checkpoint
writes the same bytes (one file or shards with their index, float32, float16, bfloat16), so transformers loads it
back bit-identically; ``variant=`` and ``state_dict=`` of save_pretrained and from_pretrained name and fill files as
transformers does; stale shards of an earlier save go; a model and its tokenizer saved together by one library
load in the other (after adding tokens and resizing the embeddings); the Hub options (subfolder, revision,
cache_dir, local_files_only) reach a sharded checkpoint on a fake Hub (tests/hubserver.py).

Tolerances. Where the files are byte-identical the weights are the same numbers, and the comparison is exact
(transformers' outputs before and after the round trip; minigpt2's). Between minigpt2 and transformers on the
same float32 weights only the order of float32 additions differs: a dot product of n terms is off by at most
about n * 2^-24 of the sum of its terms' magnitudes; here n <= 4 * n_embd = 128, so ~8e-6, and the two layers and
their layer norms keep it there: conftest's bound, 1e-5 * max(1, max|reference|) (observed: ~1e-6).
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings

import numpy as np
import pytest

import minigpt2
from conftest import TINY, describe, max_abs_diff, randomize_torch_model, tolerance

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

CLASSES = ["GPT2Model", "GPT2LMHeadModel", "GPT2DoubleHeadsModel", "GPT2ForSequenceClassification",
           "GPT2ForTokenClassification", "GPT2ForQuestionAnswering"]
CONFIG = dict(TINY, num_labels=3, pad_token_id=0)
IDS = np.array([[5, 17, 3, 42, 8, 1], [9, 2, 77, 31, 0, 64]])


def hf_model(name, seed=0, dtype=None, **config):
    cfg = transformers.GPT2Config(**{**CONFIG, **config}, attn_implementation="eager")
    model = randomize_torch_model(getattr(transformers, name)(cfg), seed).eval()
    return model if dtype is None else model.to(getattr(torch, dtype))


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    """{source name: directory} of checkpoints transformers wrote: each class, and an LM head of its own (untied)."""
    root = tmp_path_factory.mktemp("interop6")
    dirs = {}
    for name in CLASSES:
        hf_model(name).save_pretrained(root / name)
        dirs[name] = root / name
    hf_model("GPT2LMHeadModel", tie_word_embeddings=False).save_pretrained(root / "untied")
    dirs["untied"] = root / "untied"
    return dirs


def files_of(directory):
    """{file name: sha256} of a directory's weights files (everything but the JSON configs)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())
            if p.name not in ("config.json", "generation_config.json")}


def hf_load(name, directory, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (torch_dtype's deprecation in 4.57)
        model, info = getattr(transformers, name).from_pretrained(directory, attn_implementation="eager",
                                                                  output_loading_info=True, **kwargs)
    return model.eval(), info


def base_states(ours, theirs):
    """The bare transformer's last hidden state of both models on IDS."""
    with torch.no_grad():
        expected = theirs.base_model(torch.from_numpy(IDS)).last_hidden_state.numpy()
    return ours.base_model(IDS).last_hidden_state, expected


# -- 1. any class into any class: what is loaded, what is reported ---------------------------------------------

@pytest.mark.parametrize("source", CLASSES + ["untied"])
def test_every_class_loads_every_checkpoint_and_reports_what_transformers_reports(hf_dirs, source):
    """output_loading_info=True: transformers' four lists, equal; the newly initialised weights warned about exactly
    when transformers warns; the transformer's weights are the checkpoint's (hidden states within float32 rounding of
    transformers'); the same class gives transformers' outputs."""
    for target in CLASSES:
        theirs, expected = hf_load(target, hf_dirs[source])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ours, info = getattr(minigpt2, target).from_pretrained(hf_dirs[source], output_loading_info=True, seed=0)
        assert info == expected, (source, target)
        warned = [str(w.message) for w in caught if "initialised randomly" in str(w.message)]
        assert bool(warned) == bool(expected["missing_keys"]), (source, target, warned)
        assert all(k in warned[0] for k in expected["missing_keys"])
        a, b = base_states(ours, theirs)
        assert max_abs_diff(a, b) <= tolerance(b), describe(f"{source}->{target}", a, b)
        if target == source:
            main = {"GPT2Model": "last_hidden_state", "GPT2ForQuestionAnswering": "start_logits"}.get(target, "logits")
            with torch.no_grad():
                b = getattr(theirs(torch.from_numpy(IDS)), main).numpy()
            a = getattr(ours(IDS), main)
            assert max_abs_diff(a, b) <= tolerance(b), describe(f"{target} {main}", a, b)


def test_the_auto_classes_report_loading_info_too(hf_dirs):
    for auto in ("AutoModel", "AutoModelForCausalLM", "AutoModelForSequenceClassification",
                 "AutoModelForTokenClassification", "AutoModelForQuestionAnswering"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs, expected = getattr(transformers, auto).from_pretrained(hf_dirs["GPT2LMHeadModel"],
                                                                           output_loading_info=True)
            ours, info = getattr(minigpt2, auto).from_pretrained(hf_dirs["GPT2LMHeadModel"], output_loading_info=True)
        assert type(ours).__name__ == type(theirs).__name__ and info == expected, auto
    assert isinstance(minigpt2.AutoModel.from_pretrained(hf_dirs["GPT2Model"], output_loading_info=False),
                      minigpt2.GPT2Model)  # (False: the model alone, as transformers)


def test_mismatched_and_extra_weights_are_reported_as_transformers(hf_dirs, tmp_path):
    """A head of another size with ignore_mismatched_sizes=True: mismatched_keys; a checkpoint with a layer more than
    the config: that layer's weights unexpected (in the loading model's names), its causal-mask buffers too."""
    theirs, expected = hf_load("GPT2ForSequenceClassification", hf_dirs["GPT2ForSequenceClassification"],
                               num_labels=5, ignore_mismatched_sizes=True)
    with pytest.warns(UserWarning, match="ignore_mismatched_sizes"):
        ours, info = minigpt2.GPT2ForSequenceClassification.from_pretrained(
            hf_dirs["GPT2ForSequenceClassification"], num_labels=5, ignore_mismatched_sizes=True,
            output_loading_info=True)
    assert info == expected and info["mismatched_keys"] == ["score.weight"]
    hf_model("GPT2LMHeadModel", n_layer=3).save_pretrained(tmp_path / "three")
    for target in ("GPT2Model", "GPT2LMHeadModel", "GPT2ForTokenClassification"):
        theirs, expected = hf_load(target, tmp_path / "three", n_layer=2)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ours, info = getattr(minigpt2, target).from_pretrained(tmp_path / "three", n_layer=2,
                                                                   output_loading_info=True, seed=0)
        assert any("were not used: transformer.h.2." in str(w.message) for w in caught)
        assert info == expected and any(".h.2." in k or k.startswith("h.2.") for k in info["unexpected_keys"])


# -- 2. saved by one, loaded by the other: the same bytes ----------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("name", CLASSES)
def test_resaving_a_transformers_checkpoint_writes_the_same_bytes(tmp_path, name, dtype):
    """transformers saves (in its dtype, in one file and in shards); minigpt2 loads it (torch_dtype="auto": as
    stored; by default float32, as transformers 4.57) and saves it: the weights files are byte for byte
    transformers', and the config says what transformers' says. transformers then loads it bit-identically."""
    hf = hf_model(name, dtype=dtype)
    for shards in (None, "12KB"):  # (12 kB: some tensors are bigger, alone in a shard)
        options = {} if shards is None else {"max_shard_size": shards}
        theirs_dir, ours_dir = tmp_path / f"hf{shards}", tmp_path / f"ours{shards}"
        hf.save_pretrained(theirs_dir, **options)
        ours = getattr(minigpt2, name).from_pretrained(theirs_dir, torch_dtype="auto", seed=0)
        assert ours.dtype == dtype and getattr(minigpt2, name).from_pretrained(theirs_dir).dtype == "float32"
        ours.save_pretrained(ours_dir, **options)
        assert files_of(ours_dir) == files_of(theirs_dir), (name, dtype, shards)
        written, reference = (json.loads((d / "config.json").read_text()) for d in (ours_dir, theirs_dir))
        assert {k: written.get(k) for k in reference if k != "transformers_version"} == \
            {k: v for k, v in reference.items() if k != "transformers_version"}
        back = getattr(transformers, name).from_pretrained(ours_dir, torch_dtype="auto").eval()
        assert back.dtype == getattr(torch, dtype)
        for (k, a), (k2, b) in zip(back.state_dict().items(), hf.state_dict().items()):
            assert k == k2 and torch.equal(a, b), k


# -- 3. variant=, state_dict=, stale files ------------------------------------------------------------------

def test_variants_are_named_and_found_as_transformers_names_them(tmp_path):
    """variant="fp16": model.fp16.safetensors, or shards model.fp16-00001-of-0000N.safetensors and
    model.safetensors.index.fp16.json; either library loads the other's; the files of other variants stay."""
    hf = hf_model("GPT2LMHeadModel", dtype="float16")
    for shards in (None, "12KB"):
        options = {} if shards is None else {"max_shard_size": shards}
        theirs_dir = tmp_path / f"hf{shards}"
        hf.save_pretrained(theirs_dir)  # the plain checkpoint beside the variant
        hf.save_pretrained(theirs_dir, variant="fp16", **options)
        ours = minigpt2.GPT2LMHeadModel.from_pretrained(theirs_dir, variant="fp16", torch_dtype="auto")
        assert ours.dtype == "float16"
        ours.save_pretrained(tmp_path / "ours", variant="fp16", **options)  # (sharded: the single file goes)
        assert files_of(tmp_path / "ours") == {k: v for k, v in files_of(theirs_dir).items() if "fp16" in k}, shards
        back, info = hf_load("GPT2LMHeadModel", tmp_path / "ours", variant="fp16", torch_dtype=torch.float16)
        assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), hf.state_dict().values()))
    ours.save_pretrained(tmp_path / "ours")  # the plain one beside the variant: the variant's files stay
    assert {"model.safetensors", "model.safetensors.index.fp16.json"} <= set(files_of(tmp_path / "ours"))
    ours.save_pretrained(tmp_path / "ours", variant="fp16")  # unsharded again: the variant's shards and index go
    assert sorted(files_of(tmp_path / "ours")) == ["model.fp16.safetensors", "model.safetensors"]


def test_a_variant_that_is_not_there_is_named_with_what_is(tmp_path):
    hf_model("GPT2LMHeadModel").save_pretrained(tmp_path, variant="v2")
    with pytest.raises(OSError, match=r"no model\.fp16\.safetensors.*model\.v2\.safetensors.*variant="):
        minigpt2.GPT2LMHeadModel.from_pretrained(tmp_path, variant="fp16")
    with pytest.raises(OSError, match=r"no model\.safetensors.*model\.v2\.safetensors.*variant="):
        minigpt2.GPT2LMHeadModel.from_pretrained(tmp_path)
    for bad in (3, "", "a/b"):
        with pytest.raises((TypeError, ValueError), match="variant"):
            minigpt2.GPT2LMHeadModel.from_pretrained(tmp_path, variant=bad)
        with pytest.raises((TypeError, ValueError), match="variant"):
            minigpt2.GPT2LMHeadModel(minigpt2.GPT2Config(**TINY)).save_pretrained(tmp_path / "bad", variant=bad)
        assert not (tmp_path / "bad").exists()


def test_save_pretrained_writes_the_state_dict_it_is_given(tmp_path):
    """state_dict=: the model's own gives the usual files; transformers' state dict of the same weights (torch
    tensors, the tied head sharing wte) gives transformers' own file; a changed one is what gets saved, in the
    model's dtype; anything but a dict of arrays is refused before a file is written."""
    hf = hf_model("GPT2LMHeadModel")
    hf.save_pretrained(tmp_path / "hf")
    ours = minigpt2.GPT2LMHeadModel.from_pretrained(tmp_path / "hf")
    ours.save_pretrained(tmp_path / "own", state_dict=ours.state_dict())
    ours.save_pretrained(tmp_path / "torch", state_dict=hf.state_dict())
    assert files_of(tmp_path / "own") == files_of(tmp_path / "torch") == files_of(tmp_path / "hf")
    changed = dict(ours.state_dict(), **{"transformer.ln_f.bias": np.full(32, 0.5, np.float32)})
    ours.bfloat16().save_pretrained(tmp_path / "changed", state_dict=changed)
    back, info = hf_load("GPT2LMHeadModel", tmp_path / "changed", torch_dtype="auto")
    assert back.dtype == torch.bfloat16 and not any(info.values())
    assert torch.equal(back.transformer.ln_f.bias.float(), torch.full((32,), 0.5))
    for bad, error in (([1, 2], TypeError), ({"transformer.wte.weight": "text"}, TypeError)):
        with pytest.raises(error, match="state_dict"):
            ours.save_pretrained(tmp_path / "refused", state_dict=bad)
        assert not (tmp_path / "refused").exists()


def test_saving_over_a_transformers_checkpoint_removes_its_stale_shards(tmp_path):
    """transformers wrote 7 shards; minigpt2 saves 3 there, then one file: the shards and the index no save wrote
    go (a stale index or shard set would be loaded, or mixed in), files that are not weights stay."""
    hf = hf_model("GPT2LMHeadModel")
    hf.save_pretrained(tmp_path, max_shard_size="20KB")
    (tmp_path / "notes.txt").write_text("mine")
    ours = minigpt2.GPT2LMHeadModel.from_pretrained(tmp_path)
    ours.save_pretrained(tmp_path, max_shard_size="50KB")
    shards = sorted(p.name for p in tmp_path.glob("model-*"))
    assert shards == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    back, info = hf_load("GPT2LMHeadModel", tmp_path)
    assert not any(info.values()) and all(torch.equal(a, b) for a, b in zip(back.state_dict().values(),
                                                                             hf.state_dict().values()))
    ours.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "generation_config.json",
                                                          "model.safetensors", "notes.txt"]


# -- 4. the Hub options, on a fake Hub -------------------------------------------------------------------------

def test_a_sharded_checkpoint_in_a_subfolder_of_a_hub_repository(tmp_path, monkeypatch):
    """subfolder, revision (the commit), cache_dir and then local_files_only reach every file of a sharded
    checkpoint transformers wrote (a variant too); the weights are the local directory's."""
    from hubserver import HubServer

    hf = hf_model("GPT2LMHeadModel")
    hf.save_pretrained(tmp_path / "local", max_shard_size="20KB")
    hf.save_pretrained(tmp_path / "local", variant="v1")
    files = {f"sub/{p.name}": p.read_bytes() for p in (tmp_path / "local").iterdir()}
    with HubServer({"someone/tiny": files}) as hub:
        for name, value in {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "home"),
                            "HF_HUB_DISABLE_TELEMETRY": "1"}.items():
            monkeypatch.setenv(name, value)
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        cache = tmp_path / "cache"
        local = minigpt2.GPT2LMHeadModel.from_pretrained(tmp_path / "local")
        for variant in (None, "v1"):
            for options in (dict(), dict(revision=hub.commits["someone/tiny"]), dict(local_files_only=True)):
                model = minigpt2.GPT2LMHeadModel.from_pretrained("someone/tiny", subfolder="sub", cache_dir=cache,
                                                                 variant=variant, **options)
                assert all(np.array_equal(a, b) for a, b in zip(model.state_dict().values(),
                                                                local.state_dict().values()))
        assert len(hub.downloads()) == len(files)  # every file once, then from the cache
        assert not list((tmp_path / "home").rglob("*.safetensors"))  # all in cache_dir
        with pytest.raises(OSError, match="no revision 'v9'"):
            minigpt2.GPT2LMHeadModel.from_pretrained("someone/tiny", subfolder="sub", cache_dir=cache, revision="v9")


# -- 5. a model and its tokenizer, saved together ------------------------------------------------------------

@pytest.fixture(scope="module")
def vocab_files(tmp_path_factory):
    import gzip
    import pathlib

    from minigpt2 import bpe as B

    d = tmp_path_factory.mktemp("vocab6")
    for ours, theirs in (("encoder.json", "vocab.json"), ("vocab.bpe", "merges.txt")):
        (d / theirs).write_bytes(gzip.decompress(pathlib.Path(B.DATA_DIR, ours + ".gz").read_bytes()))
    return d


@pytest.mark.parametrize("writer", ["transformers", "minigpt2"])
def test_a_model_and_its_grown_tokenizer_saved_together_load_in_the_other_library(tmp_path, vocab_files, writer):
    """Add a pad token, a special token and a plain one, resize the embeddings, save both into one directory:
    AutoTokenizer and AutoModelForCausalLM of the other library read the same ids, special tokens and logits."""
    text = "<|user|> hello<x> world [PAD]"
    cfg = transformers.GPT2Config(vocab_size=50257, n_positions=32, n_embd=8, n_layer=1, n_head=2)
    hf = randomize_torch_model(transformers.GPT2LMHeadModel(cfg), 1).eval()
    if writer == "transformers":
        tok = transformers.GPT2TokenizerFast(str(vocab_files / "vocab.json"), str(vocab_files / "merges.txt"))
        model = hf
    else:
        tok = minigpt2.GPT2TokenizerFast()
        hf.save_pretrained(tmp_path / "start")
        model = minigpt2.GPT2LMHeadModel.from_pretrained(tmp_path / "start")
    tok.add_special_tokens({"pad_token": "[PAD]", "additional_special_tokens": ["<|user|>"]})
    tok.add_tokens(["<x>"])
    model.resize_token_embeddings(len(tok), mean_resizing=False)
    model.config.pad_token_id = tok.pad_token_id
    tok.save_pretrained(tmp_path / "both")
    model.save_pretrained(tmp_path / "both")
    reader = minigpt2 if writer == "transformers" else transformers
    other_tok = reader.AutoTokenizer.from_pretrained(tmp_path / "both")
    other = reader.AutoModelForCausalLM.from_pretrained(tmp_path / "both")
    for t in (tok, other_tok):
        t.ids = t(text)["input_ids"]
    assert other_tok.ids == tok.ids and len(other_tok) == len(tok) == 50260
    assert other_tok.special_tokens_map == tok.special_tokens_map
    assert other_tok.decode(tok.ids, skip_special_tokens=True) == tok.decode(tok.ids, skip_special_tokens=True)
    assert other.config.vocab_size == 50260 and other.config.pad_token_id == tok.pad_token_id
    ids = np.array([tok.ids])
    models = {writer: model, "reader": other}
    with torch.no_grad():
        logits = {k: (m(torch.from_numpy(ids)).logits.numpy() if isinstance(m, torch.nn.Module) else m(ids).logits)
                  for k, m in models.items()}
    a, b = logits[writer], logits["reader"]
    assert max_abs_diff(a, b) <= tolerance(b), describe("logits", a, b)
