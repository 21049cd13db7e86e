"""The token embeddings as HF exposes them: get/set_input_embeddings, get_output_embeddings (tied),
resize_token_embeddings (after adding tokens to a tokenizer), num_parameters(exclude_embeddings=...).

Compared with transformers 4.46.3 on the same checkpoint where it is installed. HF's mean resizing draws the new
rows from N(mean, 1e-9 * covariance of the old rows); minigpt2 takes the mean itself, so new rows agree to about
sqrt(1e-9) times the rows' spread (here ~1e-5), and we allow 1e-4.
"""
from __future__ import annotations

import numpy as np
import pytest

import minigpt2
from conftest import write_hf_checkpoint

CONFIG = dict(n_layer=1, n_head=2, n_embd=8, vocab_size=100, n_positions=32)


@pytest.fixture
def model():
    return minigpt2.GPT2LMHeadModel(minigpt2.GPT2Config(**CONFIG), seed=0)


def test_get_input_and_output_embeddings_are_wte(model):
    wte = model.params["wte"]["weight"]
    emb = model.get_input_embeddings()
    assert emb.weight is wte and (emb.num_embeddings, emb.embedding_dim) == (100, 8)
    np.testing.assert_array_equal(emb([[3, 4]]), wte[[[3, 4]]])
    assert model.get_output_embeddings().weight is wte  # the LM head is tied
    assert minigpt2.GPT2Model(model.config, model.params).get_output_embeddings() is None
    model.tie_weights()  # always tied: nothing to do, no error


def test_resize_grows_with_the_mean_and_keeps_old_rows(model):
    old = model.params["wte"]["weight"].copy()
    emb = model.resize_token_embeddings(103)
    assert emb.weight.shape == (103, 8) and model.config.vocab_size == 103
    np.testing.assert_array_equal(emb.weight[:100], old)
    np.testing.assert_allclose(emb.weight[100:], np.broadcast_to(old.mean(0, dtype=np.float64), (3, 8)), atol=1e-7)
    out = model(np.array([[1, 102]]), labels=np.array([[1, 102]]))  # the new id is accepted end to end
    assert out.logits.shape == (1, 2, 103) and np.isfinite(out.loss)
    with pytest.raises(ValueError, match=r"\[0, 103\)"):
        model(np.array([[103]]))


def test_resize_shrinks_pads_and_draws(model):
    assert model.resize_token_embeddings(pad_to_multiple_of=64).weight.shape == (128, 8)
    assert model.resize_token_embeddings(60).weight.shape == (60, 8) and model.config.vocab_size == 60
    drawn = model.resize_token_embeddings(70, mean_resizing=False).weight[60:]
    assert 0 < np.std(drawn) < 0.1  # N(0, initializer_range = 0.02)
    assert model.resize_token_embeddings().weight.shape == (70, 8)  # no arguments: unchanged


@pytest.mark.parametrize("kwargs", [dict(new_num_tokens=0), dict(new_num_tokens=2.5), dict(new_num_tokens="9"),
                                    dict(new_num_tokens=10, pad_to_multiple_of=0)])
def test_resize_rejects_bad_sizes(model, kwargs):
    with pytest.raises(ValueError, match="positive integer"):
        model.resize_token_embeddings(**kwargs)
    assert model.config.vocab_size == 100  # nothing changed


def test_set_input_embeddings_checks_the_shape(model):
    with pytest.raises(ValueError, match=r"\(vocab_size, n_embd=8\)"):
        model.set_input_embeddings(np.zeros((10, 7), np.float32))
    model.set_input_embeddings(np.ones((12, 8)))  # float64 becomes float32
    assert model.params["wte"]["weight"].dtype == np.float32 and model.config.vocab_size == 12


def test_a_resized_checkpoint_matches_transformers(tmp_path):
    torch = pytest.importorskip("torch")
    ref = write_hf_checkpoint(tmp_path, vocab_size=100)
    ours = minigpt2.GPT2LMHeadModel.from_pretrained(tmp_path)
    assert ours.num_parameters() == ref.num_parameters()
    assert ours.num_parameters(exclude_embeddings=True) == ref.num_parameters(exclude_embeddings=True)
    torch.manual_seed(0)
    ref.resize_token_embeddings(110)
    ours.resize_token_embeddings(110)
    hf_wte = ref.get_input_embeddings().weight.detach().numpy()
    np.testing.assert_array_equal(ours.get_input_embeddings().weight[:100], hf_wte[:100])
    np.testing.assert_allclose(ours.get_input_embeddings().weight[100:], hf_wte[100:], atol=1e-4)
    assert ours.config.vocab_size == ref.config.vocab_size == 110
    ids = np.array([[5, 7, 9, 11]])
    with torch.no_grad():
        expected = ref(torch.from_numpy(ids)).logits.numpy()
    got = ours(ids).logits
    np.testing.assert_allclose(got[..., :100], expected[..., :100], atol=1e-5 * max(1.0, np.abs(expected).max()))
    # The saved, resized model loads in transformers with the new size.
    ours.save_pretrained(tmp_path / "resized")
    import transformers

    again = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "resized")
    assert again.get_input_embeddings().weight.shape == (110, ref.config.n_embd)
