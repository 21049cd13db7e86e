"""The workshop as an instructor and a learner read it (round 15): an exercise check that took a float mask for a
boolean one (the tutorial then failed cells later on `~mask`), an exercise's instructions in a code cell, and text
or a figure that said other than what the code computes."""
from __future__ import annotations

import glob
import json
import os
import re
import sys
import textwrap

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TUTORIALS = os.path.join(ROOT, "tutorials")
sys.path.insert(0, TUTORIALS)

from test_workshop_parity4 import workshop  # noqa: E402,F401 (a fixture: _workshop with a cache of the test's own)


def source(name):
    with open(os.path.join(TUTORIALS, name), encoding="utf-8") as f:
        return f.read()


def prose(text):
    """A tutorial's source with its comment lines joined, so that a sentence split over two lines reads whole."""
    return re.sub(r"\n#[ \t]*", " ", text)


def test_a_mask_of_numbers_fails_the_check_that_asks_for_booleans(workshop):
    """4.1's hint, np.tril, gives floats from np.ones((T, T)): the check passed it, and `probs[..., ~causal]` two
    cells later stopped the tutorial with "ufunc 'invert' not supported"."""
    mask = np.tri(4, 4, dtype=bool)
    for numbers in (np.tril(np.ones((4, 4))), np.tri(4, 4), mask.astype(np.int64)):
        message = workshop.difference(numbers, mask)[0]
        assert message is not None and "boolean" in message and "dtype=bool" in message, message
    assert workshop.difference(mask.copy(), mask)[0] is None
    with pytest.raises(workshop.ExerciseFailed, match="booleans"):
        workshop.check_function("6.2", "the mask with a cache", lambda t, k: np.tri(t, k, k=k - t),
                                lambda t, k: np.tri(t, k, k=k - t, dtype=bool), {"T=1, K=5": (1, 5)})


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(TUTORIALS, "[0-9][0-9]_*.ipynb"))),
                         ids=os.path.basename)
def test_every_exercise_is_set_in_a_markdown_cell(path):
    """07's exercise 7.2 was a code cell of comments: in Jupyter it read as code, unlike every other exercise."""
    with open(path, encoding="utf-8") as f:
        cells = json.load(f)["cells"]
    for cell in cells:
        text = "".join(cell["source"])
        if cell["cell_type"] == "code":
            assert "✎ Exercise" not in text, f"an exercise's instructions are in a code cell:\n{text[:300]}"


def test_the_text_says_where_left_padding_puts_the_short_prompt():
    """02 said the padded prompt "sits at positions 3, 4": "My dog" is 2 tokens after 4 pads, at 4 and 5."""
    import minigpt2

    text = source("02_embeddings_and_positions.py")
    short, long = re.search(r'short, long = tokenizer\.encode\("([^"]*)"\), tokenizer\.encode\("([^"]*)"\)',
                            text).groups()
    tokenizer = minigpt2.GPT2Tokenizer.from_pretrained("gpt2")
    n, total = len(tokenizer.encode(short)), len(tokenizer.encode(long))
    said = re.search(r"\((\d+) tokens, after (\d+) pads\) sits at positions (\d+) and (\d+) instead of 0 and 1",
                     prose(text))
    assert said, "02 no longer says where left padding puts the short prompt"
    assert [int(x) for x in said.groups()] == [n, total - n, total - n, total - n + 1] and n == 2


def test_the_token_length_histogram_counts_all_50257_tokens(workshop, monkeypatch):
    """01's histogram, titled "GPT-2's 50,257 tokens by length", had bins up to 16 bytes: the 72 longer tokens
    (up to 128 bytes) were left out, and the last bar held lengths 15 and 16 together."""
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from minigpt2 import bpe

    text = source("01_tokenization.py")
    start = text.index("    lengths = ")
    end = text.index("\n", text.index('_workshop.show(fig, "01_vocabulary_token_lengths")'))
    figures = []
    monkeypatch.setattr(workshop, "show", lambda fig, name: figures.append(fig))
    encoder, _ = bpe.gpt2_vocabulary()
    exec(textwrap.dedent(text[start:end]),
         {"np": np, "bpe": bpe, "encoder": encoder, "plt": plt, "_workshop": workshop})
    (fig,) = figures
    bars = fig.axes[0].patches
    assert sum(bar.get_height() for bar in bars) == len(encoder) == 50257
    one_byte = sum(bar.get_height() for bar in bars if bar.get_x() < 1 < bar.get_x() + bar.get_width())
    assert one_byte == sum(len(bpe.from_byte_chars(t)) == 1 for t in encoder)  # a bar per length, not per gap
    plt.close(fig)


def test_the_largest_gaussian_magnitudes_quoted_for_int8_blocks_are_measured():
    """09 quoted 2.1 and 3.2 standard deviations, the largest *value* of 32 and 768 Gaussian numbers; a scale
    follows the largest *magnitude*, about 2.4 and 3.4."""
    said = re.search(r"largest magnitude among 32 Gaussian numbers is about ([\d.]+) standard deviations, among 768 "
                     r"about ([\d.]+) \(printed below\): per-column steps are about ([\d.]+) times as large",
                     prose(source("09_fewer_bits.py")))
    assert said, "09 no longer quotes the largest magnitude of 32 and 768 Gaussian numbers"
    of32, of768, ratio = (float(x) for x in said.groups())
    largest = {n: np.abs(np.random.default_rng(n).standard_normal((2000, n))).max(axis=1).mean() for n in (32, 768)}
    assert abs(largest[32] - of32) < 0.06 and abs(largest[768] - of768) < 0.06
    assert abs(largest[768] / largest[32] - ratio) < 0.06


def test_exercise_8_1_comes_after_the_blocking_it_asks_for():
    """08 set exercise 8.1 (panels, tiles, packing) before the section that explains them."""
    text = source("08_c_kernels.py")
    assert text.index("## Cache blocking, in NumPy") < text.index("✎ Exercise 8.1") < text.index("def blocked_matmul")


def test_training_names_the_size_of_grad_py_and_the_model_it_compares_with():
    """10 said grad.py was ~150 lines (it is about 250), and named the comparison model MODEL ("gpt2") whatever
    MINIGPT2_WORKSHOP_MODEL had loaded instead."""
    text = source("10_training.py")
    quoted = int(re.search(r"`minigpt2/training/grad\.py`, ~(\d+) lines", text).group(1))
    with open(os.path.join(ROOT, "minigpt2", "training", "grad.py"), encoding="utf-8") as f:
        lines = len(f.read().splitlines())
    assert abs(lines - quoted) <= 0.2 * lines, (quoted, lines)
    comparison = text[text.index("reference = _workshop.load_model(MODEL)"):]
    assert "_workshop.model_label(reference)" in comparison.split("\n\n")[0]
