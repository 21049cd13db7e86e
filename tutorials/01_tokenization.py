# ---
# jupyter:
#   jupytext:
#     text_representation:
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Tokenization: from text to ids
#
# GPT-2 never sees characters. It sees integers from 0 to 50256, each standing for a piece of text. The
# tokenizer that makes them is **byte-level BPE** (byte-pair encoding), and it works in four steps:
#
# 1. **pre-split** the text with a regular expression into words, numbers, punctuation and spaces;
# 2. turn each piece into its **UTF-8 bytes**, drawn as printable characters;
# 3. **merge** adjacent symbols, pair by pair, in the order the merges were learned;
# 4. **look up** each resulting token's id.
#
# We write each step in plain Python, check it against minigpt2's tokenizer, and end with why `" Hello"`
# and `"Hello"` are different tokens, and what the model makes of the difference.
#
# **Exercises** (✎ 1.1 to 1.3): in the notebook `01_tokenization.ipynb` the key lines are left blank (`...`).
# Write them and run the cell: the check below each one says whether your answer matches minigpt2 and, if
# not, how it differs. Solutions: `01_tokenization_solution.ipynb` (and this tutorial's `.py` file).

# %%
MODEL = "gpt2"  # used at the end; the real 124M GPT-2 when available, else the tiny random model

import numpy as np
import regex  # the `regex` module: like `re`, plus Unicode classes such as \p{L}

import _workshop
import minigpt2
from minigpt2 import bpe

tokenizer = minigpt2.GPT2Tokenizer.from_pretrained("gpt2")  # the vocabulary ships with minigpt2: no download
plt = _workshop.pyplot()
print(f"'Hello world' becomes the ids {tokenizer.encode('Hello world')}; "
      f"' Hello world' (with a leading space) becomes {tokenizer.encode(' Hello world')}")

# %% [markdown]
# ## Step 2 first: bytes, and a printable character for each
#
# Text is Unicode; files and networks carry bytes. UTF-8 spends one byte on ASCII and two to four on other
# characters. Working on bytes means *any* string can be encoded, with no "unknown" token:

# %%
for ch in ["A", "é", "世", "👋"]:
    print(f"{ch!r}: {len(ch.encode('utf-8'))} byte(s) {ch.encode('utf-8').hex(' ')}")

# %% [markdown]
# The vocabulary files are text, so OpenAI gave every byte value a visible stand-in. The 188 bytes that are
# already printable (and not a space) stand for themselves; the other 68 (control codes, the space, a few
# Latin-1 gaps) are moved, in order, to the characters from U+0100 upwards. That is why the space shows up
# as `Ġ` and the newline as `Ċ` in GPT-2's tokens.

# %%
def my_bytes_to_unicode():
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    table, moved = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + moved)
            moved += 1
    return table


byte_char = my_bytes_to_unicode()
assert byte_char == bpe.bytes_to_unicode(), "our table equals minigpt2's"
print(f"{sum(b == ord(c) for b, c in byte_char.items())} bytes stand for themselves, "
      f"{sum(b != ord(c) for b, c in byte_char.items())} are moved")
print("space ->", byte_char[0x20], "  newline ->", byte_char[0x0A], "  tab ->", byte_char[0x09])


# %% [markdown]
# **✎ Exercise 1.1 · a piece as byte-characters.** Write `my_byte_chars(piece)`: encode the piece as UTF-8 and
# replace every byte by its stand-in from `byte_char`, joined into one string. (`" é"` has three bytes, so it
# becomes three characters.)

# %%
def my_byte_chars(piece):
    # BLANK return ...  # exercise 1.1: your code here
    ### BEGIN SOLUTION 1.1
    return "".join(byte_char[b] for b in piece.encode("utf-8"))
    ### END SOLUTION 1.1


my_byte_chars = _workshop.check_function("1.1", "a piece as byte-characters", my_byte_chars, bpe.to_byte_chars,
                                         {"' héllo 👋'": (" héllo 👋",), "'Hello'": ("Hello",), "a newline": ("\n",)})
print(f"' héllo 👋' as byte-characters: {my_byte_chars(' héllo 👋')!r}")

# %% [markdown]
# ## Step 1: the pre-tokenization pattern
#
# BPE never merges across the boundaries this regular expression draws. Its alternatives, tried left to
# right at each position:
#
# | part | matches |
# |---|---|
# | `'s\|'t\|'re\|'ve\|'m\|'ll\|'d` | English contractions, as their own pieces |
# | ` ?\p{L}+` | a run of letters, with at most one space in front |
# | ` ?\p{N}+` | a run of digits, with at most one space in front |
# | ` ?[^\s\p{L}\p{N}]+` | a run of other symbols (punctuation, emoji), with at most one space in front |
# | `\s+(?!\S)` | whitespace, except the last space before a word (the word keeps that one) |
# | `\s+` | any remaining whitespace |
#
# The optional leading space is the heart of it: a word *carries the space before it*.

# %%
MY_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
assert MY_PATTERN == bpe.GPT2_SPLIT_PATTERN

sample = "Hello world! It's 2024,   and GPT-2 says: 👋\n\nBye."
pieces = regex.findall(MY_PATTERN, sample)
print(pieces)
assert pieces == bpe.pretokenize(sample) and "".join(pieces) == sample  # nothing is lost

# %% [markdown]
# ## Step 3: merges, one by one
#
# `vocab.bpe` lists 50,000 pairs in the order training created them. The line number is the pair's **rank**.
# To encode a piece: start from its single byte-characters; find the adjacent pair with the lowest rank; merge
# every occurrence of it; repeat until no adjacent pair is in the list.

# %%
encoder, merges = bpe.gpt2_vocabulary()  # token string -> id, and the ranked pairs
ranks = {pair: rank for rank, pair in enumerate(merges)}
print(f"{len(encoder)} tokens, {len(merges)} merges; the first five merges: {merges[:5]}")


# %% [markdown]
# **✎ Exercise 1.2 · one merge step.** `my_bpe` below finds the best pair; you write `merge_pair(symbols, pair)`,
# which returns a new list where every adjacent occurrence of `pair` (left to right, not overlapping) is
# replaced by the two symbols joined. `merge_pair(["a", "b", "a", "b"], ("a", "b"))` is `["ab", "ab"]`.

# %%
def merge_pair(symbols, pair):
    # BLANK return ...  # exercise 1.2: your code here
    ### BEGIN SOLUTION 1.2
    merged, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            merged.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            merged.append(symbols[i])
            i += 1
    return merged
    ### END SOLUTION 1.2


def my_bpe(word, verbose=False):
    symbols = list(word)
    while len(symbols) > 1:
        pairs = set(zip(symbols, symbols[1:]))
        best = min(pairs, key=lambda p: ranks.get(p, float("inf")))  # learned earliest
        if best not in ranks:
            break  # no adjacent pair was ever merged in training
        merged = merge_pair(symbols, best)
        if not isinstance(merged, list) or len(merged) >= len(symbols):
            raise ValueError(f"merge_pair({symbols}, {best}) returned {merged!r}: a list with fewer symbols was "
                             f"expected, since {best} occurs in it")
        symbols = merged
        if verbose:
            print(f"  rank {ranks[best]:>5}: {best[0]!r} + {best[1]!r}  ->  {symbols}")
    return symbols


my_bpe = _workshop.check_function(
    "1.2", "one merge step", my_bpe, lambda word, verbose=False: bpe.bpe_merge(word, ranks),
    {f"{w!r}": (my_byte_chars(w),) for w in (" tokenization", " aaaa", "Hello", " unbelievable")})
word = my_byte_chars(" tokenization")
print(f"merging {word!r}, one line per merge:")
tokens = my_bpe(word, verbose=True)

# %% [markdown]
# minigpt2's `show_work` prints the same story for a whole text, with the ids at the end:

# %%
print(minigpt2.show_work(" tokenization"))

# %% [markdown]
# A picture of the merges: each row is the piece after one more merge, each box one symbol.

# %%
def merge_ladder(word):
    rows, symbols = [list(word)], list(word)
    trace = []
    bpe.bpe_merge(word, ranks, trace)
    rows += [symbols for _, _, symbols in trace]
    return rows, [rank for rank, _, _ in trace]


if plt:
    rows, applied = merge_ladder(my_byte_chars(" unbelievable"))
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 0.6))
    for r, symbols in enumerate(rows):
        x = 0
        for s in symbols:
            ax.text(x + len(s) / 2, -r, s, ha="center", va="center", fontsize=10, family="monospace",
                    bbox=dict(boxstyle="round,pad=0.25", fc="#dbe9f6", ec="#4a78b0"))
            x += len(s) + 0.6
        ax.text(-1.5, -r, "start" if r == 0 else f"rank {applied[r - 1]}", ha="right", va="center", fontsize=8)
    ax.set_xlim(-6, 24); ax.set_ylim(-len(rows) + 0.4, 0.6); ax.axis("off")
    ax.set_title("BPE merges of ' unbelievable', top to bottom: the pair with the lowest rank merges first\n"
                 "(Ġ is the space; each box is one symbol)")
    _workshop.show(fig, "01_merge_ladder")

# %% [markdown]
# ## Step 4, and the whole encoder
#
# The merged tokens are looked up in `encoder.json`. Put together:

# %%
def my_encode(text):
    ids = []
    for piece in regex.findall(MY_PATTERN, text):  # step 1
        for token in my_bpe(my_byte_chars(piece)):  # steps 2 and 3
            ids.append(encoder[token])  # step 4
    return ids


print("text -> ids from my_encode (each equal to minigpt2's tokenizer.encode):")
for text in ["Hello world", " Hello world", "Hello, my dog is cute", sample, "naïve café 東京 🤖", ""]:
    ours = my_encode(text)
    assert ours == tokenizer.encode(text), text
    print(f"  {text!r:48} -> {ours}")

# %% [markdown]
# ## Decoding: ids back to text
#
# Run the tables backwards: id → token string → bytes (undo the stand-ins) → UTF-8. It is exact: decoding
# the encoding gives back the string, character for character. One token can hold *part* of a character,
# though (GPT-2 often splits an emoji over two or three tokens), so decoding a single token alone may not
# be valid UTF-8:

# %%
char_byte = {c: b for b, c in byte_char.items()}
decoder = {i: t for t, i in encoder.items()}


# %% [markdown]
# **✎ Exercise 1.3 · decoding.** Write `my_decode(ids)`: turn each id into its token string (`decoder`), each
# character of it back into its byte (`char_byte`), and the bytes into text with
# `.decode("utf-8", errors="replace")`.

# %%
def my_decode(ids):
    # BLANK return ...  # exercise 1.3: your code here
    ### BEGIN SOLUTION 1.3
    data = bytes(char_byte[c] for i in ids for c in decoder[i])
    return data.decode("utf-8", errors="replace")
    ### END SOLUTION 1.3


my_decode = _workshop.check_function("1.3", "decoding", my_decode, tokenizer.decode,
                                     {repr(t): (tokenizer.encode(t),) for t in ["Hello world", sample, "naïve café 東京 🤖"]})
emoji_ids = tokenizer.encode(" 🤖")
print(f"' 🤖' is {len(emoji_ids)} tokens, {emoji_ids}, written {[decoder[i] for i in emoji_ids]}")
print("each token decoded alone:", [my_decode([i]) for i in emoji_ids], "(U+FFFD: part of a character)")
print("all of them together:    ", repr(my_decode(emoji_ids)))

stream = minigpt2.TokenStreamDecoder(tokenizer)  # what generation uses: holds back unfinished characters
print("streamed, one token at a time:", [stream.step(i) for i in emoji_ids], "(nothing until the character is whole)")

# %% [markdown]
# ## Special tokens
#
# GPT-2 has one: `<|endoftext|>`, id 50256, which separated documents in training. It is not produced by
# merges: the tokenizer finds it in the text first and emits its id directly. It doubles as the beginning-
# and end-of-sequence token, and, since GPT-2 has no padding token, as the usual pad filler.

# %%
print(f"special tokens: {tokenizer.all_special_tokens} with ids {tokenizer.all_special_ids}")
print("'one<|endoftext|>two' with the special token:", tokenizer.encode("one<|endoftext|>two"))
print("the same, split as plain text instead:      ", tokenizer.encode("one<|endoftext|>two", split_special_tokens=True))
assert tokenizer.encode("one<|endoftext|>two") == my_encode("one") + [50256] + my_encode("two")

# %% [markdown]
# ## Why `" Hello"` and `"Hello"` differ
#
# Because of step 1, a word at the start of a text has no space in front of it, while the same word after a
# space carries it. The vocabulary learned both forms, as different tokens with different ids and different
# embeddings: `"Hello"` is 15496 and `" Hello"` is 18435. (That is why transformers has `add_prefix_space`.)

# %%
for text in ["Hello", " Hello", "hello", " hello", " HELLO"]:
    print(f"{text!r:10} -> ids {tokenizer.encode(text)}, tokens {tokenizer.tokenize(text)}")
assert tokenizer.encode("Hello") == [15496] and tokenizer.encode(" Hello") == [18435]

leading_space = sum(t.startswith("Ġ") for t in encoder)
print(f"{leading_space} of {len(encoder)} vocabulary entries ({leading_space / len(encoder):.0%}) begin with a space")

# %% [markdown]
# To the model they are two unrelated rows of the embedding table, so it predicts differently after each.
# With the real gpt2, compare the two next-token distributions below; with the tiny random model both are
# noise.

# %%
model = _workshop.load_model(MODEL)
wte = model.params["wte"]["weight"]
a, b = wte[15496], wte[18435]
print(f"cosine similarity of the embeddings of 'Hello' and ' Hello' ({_workshop.model_label(model)}): "
      f"{a @ b / np.linalg.norm(a) / np.linalg.norm(b):.3f} (1 = same direction, 0 = unrelated)")

texts = ["Hello", "I said Hello"]  # "Hello" at the start, and " Hello" after a word
for text in texts:
    logits = model(np.array([tokenizer.encode(text)])).logits[0, -1]
    probs = np.exp(logits - logits.max()); probs /= probs.sum()
    top = np.argsort(-probs)[:5]
    print(f"the 5 likeliest next tokens after {text!r}, with their probabilities: "
          + ", ".join(f"{tokenizer.decode([i])!r} {probs[i]:.2g}" for i in top))
_workshop.say_if_random(model, "these similarities and next-token probabilities")

if plt:
    lengths = np.minimum([len(bpe.from_byte_chars(t)) for t in encoder], 16)  # the longest (up to 128) in one bar
    spaced = np.array([t.startswith("Ġ") for t in encoder])
    bins = np.arange(0.5, 17)  # one bar per length: 1, 2, ..., 15, and 16 or more
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.hist([lengths[spaced], lengths[~spaced]], bins=bins, stacked=True,
            label=["starts with a space (Ġ)", "no leading space"])
    ax.set_xlabel("token length (bytes)"); ax.set_ylabel("number of vocabulary entries"); ax.legend()
    ax.set_xticks(range(1, 17)); ax.set_xticklabels([str(n) for n in range(1, 16)] + ["16+"])
    ax.set_title("GPT-2's 50,257 tokens by length")
    _workshop.show(fig, "01_vocabulary_token_lengths")

# %% [markdown]
# ## What we built
#
# `my_encode` (regex pre-split → UTF-8 bytes as characters → merges by rank → lookup) and `my_decode` equal
# minigpt2's `GPT2Tokenizer` on every text above; `<|endoftext|>` is matched before BPE runs. The ids go next
# into the embedding tables: `02_embeddings_and_positions`.
