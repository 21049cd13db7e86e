"""set_seed before building a model makes its random weights reproducible, as transformers.set_seed does for its
models: the idiom of every training script and workshop notebook (``set_seed(42)`` at the top, then
``GPT2LMHeadModel(config)``). The expected behaviour is transformers' own, checked here beside ours."""
import numpy as np
import pytest

import minigpt2

CONFIG = dict(n_layer=2, n_embd=32, n_head=4, vocab_size=97, n_positions=16)


def _weights(model):
    return {k: np.asarray(v) for k, v in model.state_dict().items()}


def _same(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("cls", ["GPT2LMHeadModel", "GPT2Model", "GPT2ForSequenceClassification"])
def test_set_seed_makes_a_new_model_reproducible_as_in_transformers(cls):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")

    def build(lib, seed):
        lib.set_seed(seed)
        return _weights(getattr(lib, cls)(lib.GPT2Config(**CONFIG)))

    # transformers: the same seed, the same weights; another seed, others
    hf_a, hf_b, hf_c = build(transformers, 3), build(transformers, 3), build(transformers, 4)
    assert _same(hf_a, hf_b) and not _same(hf_a, hf_c)
    # minigpt2 the same (its draws are NumPy's, so the values differ from torch's; the reproducibility is the API)
    a, b, c = build(minigpt2, 3), build(minigpt2, 3), build(minigpt2, 4)
    assert _same(a, b)
    assert not _same(a, c)


def test_numpy_seed_decides_too_and_an_explicit_seed_wins():
    config = minigpt2.GPT2Config(**CONFIG)
    np.random.seed(11)
    a = _weights(minigpt2.GPT2LMHeadModel(config))
    np.random.seed(11)
    b = _weights(minigpt2.GPT2LMHeadModel(config))
    assert _same(a, b)
    # without seeding again, the next model draws on: other weights (as two models built in a row in transformers)
    assert not _same(b, _weights(minigpt2.GPT2LMHeadModel(config)))
    # seed= gives its own generator, whatever the global state
    np.random.seed(1)
    c = _weights(minigpt2.GPT2LMHeadModel(config, seed=5))
    np.random.seed(2)
    assert _same(c, _weights(minigpt2.GPT2LMHeadModel(config, seed=5)))


def test_resized_embeddings_rows_follow_set_seed():
    def resized(seed):
        model = minigpt2.GPT2LMHeadModel(minigpt2.GPT2Config(**CONFIG), seed=0)
        minigpt2.set_seed(seed)
        model.resize_token_embeddings(CONFIG["vocab_size"] + 5, mean_resizing=False)
        return np.asarray(model.state_dict()["transformer.wte.weight"])[-5:]

    assert np.array_equal(resized(8), resized(8))
    assert not np.array_equal(resized(8), resized(9))
