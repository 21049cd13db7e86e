"""Every code example of the product's reference notes runs on minigpt2 with only the import line changed.

The notes (../shared/seed/gpt2-notes.txt beside the repository; not in it, so CI has no copy) are HF's GPT-2
documentation in Chinese. They hold five code examples, copied below exactly as the notes print them, the text the
notes show after a line (a REPL's output) included: it is a string literal, which Python evaluates and drops, so
each copy is a runnable program. A test swaps `from transformers import` for `from minigpt2 import` on the first
line, changes nothing else, and runs the rest statement by statement as the REPL the notes come from would
(`run_example`), keeping the value of each bare expression next to what the notes show for it.

"gpt2" and "openai-community/gpt2" come from a loopback Hub (tests/hubserver.py) serving a tiny random GPT-2, so
the shapes are (1, 6, 8), not the (1, 6, 768) of the real 124M model, and generated text is not the notes' text.
When the notes are reachable (a checkout beside ../shared, or MINIGPT2_NOTES naming the file),
test_the_copies_are_the_notes_verbatim checks that each copy is in the notes and that no example is missing.

What the examples needed: return_tensors="pt" (minigpt2/tokenizer/options.py: NumPy arrays, docs/tokenizer.md).
torch tensors passed to the models (test_models_and_generate_take_torch_tensors) go through minigpt2/checks.py.
"""
from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import re

import numpy as np
import pytest

from hubserver import HubServer, tiny_checkpoint_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTES = os.environ.get("MINIGPT2_NOTES") or os.path.join(ROOT, "..", "shared", "seed", "gpt2-notes.txt")
REPO = "openai-community/gpt2"
PROMPT = "GPT2 is a model developed by OpenAI."

# -- the examples, as the notes print them (section number and title as key) --------------------------------------

EXAMPLES = {}

EXAMPLES["1 基本实例"] = r"""from transformers import AutoModelForCausalLM, AutoTokenizer

model = AutoModelForCausalLM.from_pretrained("gpt2")
tokenizer = AutoTokenizer.from_pretrained("gpt2")

prompt = "GPT2 is a model developed by OpenAI."

input_ids = tokenizer(prompt, return_tensors="pt").input_ids

gen_tokens = model.generate(
    input_ids,
    do_sample=True,
    temperature=0.9,
    max_length=100,
)
gen_text = tokenizer.batch_decode(gen_tokens)[0]


print(gen_text)
'''
GPT2 is a model developed by OpenAI. It helps to define the neural network of a person with Autism. The researchers have previously identified the basic network of neurons in the brain responsible for processing emotional information. They also found that the person with Autism has similar information processing abilities as other people with similar intelligence.

The researchers say that it's important to look beyond the normal limitations of the human brain. "This type of neuroimaging has been really important," explains Michael A. Be
'''"""

EXAMPLES["2.2 GPT2Config 举例"] = r"""from transformers import GPT2Config, GPT2Model

# 初始化 GPT2 配置
configuration = GPT2Config()


configuration
'''
GPT2Config {
  "activation_function": "gelu_new",
  "attn_pdrop": 0.1,
  "bos_token_id": 50256,
  "embd_pdrop": 0.1,
  "eos_token_id": 50256,
  "initializer_range": 0.02,
  "layer_norm_epsilon": 1e-05,
  "model_type": "gpt2",
  "n_embd": 768,
  "n_head": 12,
  "n_inner": null,
  "n_layer": 12,
  "n_positions": 1024,
  "reorder_and_upcast_attn": false,
  "resid_pdrop": 0.1,
  "scale_attn_by_inverse_layer_idx": false,
  "scale_attn_weights": true,
  "summary_activation": null,
  "summary_first_dropout": 0.1,
  "summary_proj_to_labels": true,
  "summary_type": "cls_index",
  "summary_use_proj": true,
  "transformers_version": "4.41.2",
  "use_cache": true,
  "vocab_size": 50257
}
'''
# 根据配置初始化模型(具有随机权重)
model = GPT2Model(configuration)"""

EXAMPLES["3.2 GPT2Tokenizer 举例"] = r"""from transformers import GPT2Tokenizer

tokenizer = GPT2Tokenizer.from_pretrained("openai-community/gpt2")

tokenizer("Hello world"),tokenizer(" Hello world")
'''
({'input_ids': [15496, 995], 'attention_mask': [1, 1]},
 {'input_ids': [18435, 995], 'attention_mask': [1, 1]})
'''"""

EXAMPLES["4.2 GPT2TokenizerFast 举例"] = r"""from transformers import GPT2TokenizerFast

tokenizer = GPT2TokenizerFast.from_pretrained("openai-community/gpt2")

tokenizer("Hello world"),tokenizer(" Hello world")
'''
({'input_ids': [15496, 995], 'attention_mask': [1, 1]},
 {'input_ids': [18435, 995], 'attention_mask': [1, 1]})
'''"""

EXAMPLES["6.1.3 GPT2Model forward 举例"] = r"""from transformers import AutoTokenizer, GPT2Model
import torch

tokenizer = AutoTokenizer.from_pretrained("openai-community/gpt2")
model = GPT2Model.from_pretrained("openai-community/gpt2")

inputs = tokenizer("Hello, my dog is cute", return_tensors="pt")
outputs = model(**inputs)

last_hidden_states = outputs.last_hidden_state
last_hidden_states
'''
tensor([[[-9.3295e-06, -1.4021e-01, -2.0845e-01,  ..., -1.5329e-01,
          -6.7826e-02, -1.9630e-01],
         [ 4.1949e-01,  2.3525e-01,  3.4816e-01,  ...,  4.5321e-02,
           1.5447e-01,  1.9546e-02],
         [-7.0056e-02,  2.6082e-01, -2.9146e-01,  ...,  9.0979e-02,
           4.9659e-01, -4.1824e-01],
         [-1.9695e-01, -2.9247e-01, -1.4119e-01,  ..., -8.9255e-02,
          -2.2392e-01,  1.2212e-01],
         [-6.4193e-01, -1.0236e-01, -4.2129e-01,  ...,  6.8697e-02,
          -5.1117e-01,  5.0044e-01],
         [ 4.1290e-03, -3.1455e-02, -1.0823e+00,  ..., -5.0159e-02,
          -3.0878e-02,  4.3480e-01]]], grad_fn=<ViewBackward0>)
'''"""


# -- running an example ---------------------------------------------------------------------------------------------

def minigpt2_version(example: str) -> str:
    """The example with its import line changed, and nothing else."""
    first, rest = example.split("\n", 1)
    assert first.startswith("from transformers import ")
    assert not re.search(r"^\s*(from|import)\s+transformers\b", rest, re.MULTILINE), "one import line to change"
    return first.replace("from transformers import ", "from minigpt2 import ", 1) + "\n" + rest


class Session:
    """What running an example left: its variables, what it printed, and each (value, text the notes show for it)."""

    def __init__(self):
        self.namespace = {"__name__": "__example__"}
        self.printed = ""
        self.shown = []


def run_example(key: str) -> Session:
    """Run example `key` (import line changed) as the REPL of the notes: statement by statement; a bare
    expression's value is kept, and a string literal after a statement is what the notes show for it."""
    session, last = Session(), None
    tree = ast.parse(minigpt2_version(EXAMPLES[key]), filename=key)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for node in tree.body:
            text = node.value.value if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) else None
            if isinstance(text, str):
                session.shown.append((last, text))
                continue
            if isinstance(node, ast.Expr):
                last = eval(compile(ast.Expression(node.value), key, "eval"), session.namespace)
            else:
                exec(compile(ast.Module([node], type_ignores=[]), key, "exec"), session.namespace)
                last = None
    session.printed = out.getvalue()
    return session


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    return tiny_checkpoint_files(tmp_path_factory.mktemp("tiny_gpt2"), seed=1)


@pytest.fixture
def hub(tiny_files, tmp_path, monkeypatch):
    """A loopback Hub serving a tiny random GPT2LMHeadModel as openai-community/gpt2 (alias "gpt2"), with an
    empty cache: what from_pretrained("gpt2") downloads in the examples."""
    with HubServer({REPO: tiny_files}, aliases={"gpt2": REPO}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf_cache"))
        monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        yield server


def served_config(tiny_files) -> dict:
    return json.loads(tiny_files["config.json"])


# -- the examples ---------------------------------------------------------------------------------------------------

def test_1_basic_generation(hub, tiny_files):
    session = run_example("1 基本实例")
    ns = session.namespace
    gen_tokens, gen_text = ns["gen_tokens"], ns["gen_text"]
    assert type(ns["input_ids"]) is np.ndarray and ns["input_ids"].shape == (1, 11)  # return_tensors="pt": NumPy
    assert type(gen_tokens) is np.ndarray and gen_tokens.dtype == np.int64 and gen_tokens.shape[0] == 1
    eos = served_config(tiny_files)["eos_token_id"]
    # max_length=100 counts the prompt; sampling may end earlier only at the end-of-text token
    assert gen_tokens.shape[1] == 100 or (gen_tokens.shape[1] < 100 and gen_tokens[0, -1] == eos)
    np.testing.assert_array_equal(gen_tokens[:, :11], ns["input_ids"])
    assert isinstance(gen_text, str) and gen_text.startswith(PROMPT)
    assert session.printed == gen_text + "\n"
    (value, notes_text), = session.shown
    assert value is None and notes_text.strip().startswith(PROMPT)  # the notes show print's output


def test_2_2_config_and_a_random_model():
    from minigpt2 import GPT2Config, GPT2Model

    session = run_example("2.2 GPT2Config 举例")
    (configuration, notes_text), = session.shown
    assert isinstance(configuration, GPT2Config)
    # The REPL shows repr(configuration): the same JSON as the notes, less transformers' version stamp.
    shown = repr(configuration)
    assert shown.startswith("GPT2Config {") and notes_text.strip().startswith("GPT2Config {")
    notes = json.loads(notes_text.strip()[len("GPT2Config "):])
    assert notes.pop("transformers_version") == "4.41.2"
    assert json.loads(shown[len("GPT2Config "):]) == notes
    model = session.namespace["model"]
    assert type(model) is GPT2Model and model.config is configuration
    assert model.num_parameters() == 124_439_808  # GPT2Model of the 124M architecture, as in transformers


@pytest.mark.parametrize("key, cls", [("3.2 GPT2Tokenizer 举例", "GPT2Tokenizer"),
                                      ("4.2 GPT2TokenizerFast 举例", "GPT2TokenizerFast")])
def test_3_2_and_4_2_tokenizers(hub, key, cls):
    import minigpt2

    session = run_example(key)
    assert type(session.namespace["tokenizer"]) is getattr(minigpt2, cls)
    (value, notes_text), = session.shown
    assert value == ast.literal_eval(notes_text.strip())  # the ids the notes show, exactly
    assert repr(value) == " ".join(notes_text.split())    # and the REPL shows them as the notes do
    assert not hub.downloads(), "GPT-2's vocabulary is bundled: the tokenizer downloads nothing"


def test_6_1_3_gpt2model_forward(hub, tiny_files):
    pytest.importorskip("torch", reason="the example imports torch itself")
    from minigpt2 import GPT2Model, GPT2TokenizerFast

    session = run_example("6.1.3 GPT2Model forward 举例")
    ns = session.namespace
    assert type(ns["model"]) is GPT2Model and type(ns["tokenizer"]) is GPT2TokenizerFast
    assert ns["inputs"]["input_ids"].tolist() == [[15496, 11, 616, 3290, 318, 13779]]
    (value, notes_text), = session.shown
    n_embd = served_config(tiny_files)["n_embd"]
    # The notes show a torch tensor of shape (1, 6, 768) (the 124M model): here a float32 NumPy array of the
    # served model's width, for the same six tokens.
    assert len(re.findall(r"\[ ?-?\d", notes_text)) == 6  # the notes' rows: one per token
    assert value is ns["last_hidden_states"] and type(value) is np.ndarray
    assert value.dtype == np.float32 and value.shape == (1, 6, n_embd) and np.isfinite(value).all()
    again = GPT2Model.from_pretrained(REPO)(input_ids=np.array([[15496, 11, 616, 3290, 318, 13779]]))
    np.testing.assert_array_equal(value, again.last_hidden_state)


def test_the_copies_are_the_notes_verbatim():
    """Each example above is in the notes, character for character, and the notes have no other example."""
    if not os.path.isfile(NOTES):
        pytest.skip(f"the notes are not beside this checkout ({NOTES}); set MINIGPT2_NOTES to check the copies")
    with open(NOTES, encoding="utf-8") as f:
        notes = f.read()
    for key, example in EXAMPLES.items():
        assert example in notes, f"example {key} differs from the notes"
    assert notes.count("from transformers import") == len(EXAMPLES), "the notes have an example not copied here"
    assert notes.count("'''") == 2 * len(EXAMPLES)  # every output the notes show is inside a copy


def test_examples_change_only_the_import_line():
    for key, example in EXAMPLES.items():
        changed = minigpt2_version(example).splitlines()
        assert changed[1:] == example.splitlines()[1:], key
        assert changed[0] == example.splitlines()[0].replace("transformers", "minigpt2"), key


# -- torch tensors in, as transformers' users have them -------------------------------------------------------------

def test_models_and_generate_take_torch_tensors(tiny_files, tmp_path):
    """Ids from transformers' own tokenizer (torch tensors) work in the models and generate(); a float tensor that
    requires grad, or in bfloat16, is read as its values (minigpt2.checks.from_torch); another device is a clear
    error naming the argument."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from minigpt2 import AutoTokenizer, GPT2LMHeadModel, GPT2Model

    directory = tmp_path / "model"
    directory.mkdir()
    for name, data in tiny_files.items():
        (directory / name).write_bytes(data)
    ours = AutoTokenizer.from_pretrained("gpt2")
    ours.save_pretrained(directory)
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(str(directory))
    model = GPT2LMHeadModel.from_pretrained(str(directory))

    texts = ["Hello, my dog is cute", "Hi"]
    hf_tokenizer.pad_token = ours.pad_token = ours.eos_token
    pt = hf_tokenizer(texts, padding=True, return_tensors="pt")
    np_inputs = ours(texts, padding=True, return_tensors="np")
    assert isinstance(pt["input_ids"], torch.Tensor)
    with torch.no_grad():
        got = model(**pt, labels=pt["input_ids"])
    expected = model(**np_inputs, labels=np_inputs["input_ids"])
    np.testing.assert_array_equal(got.logits, expected.logits)
    assert float(got.loss) == float(expected.loss)

    ours.padding_side = hf_tokenizer.padding_side = "left"
    pt = hf_tokenizer(texts, padding=True, return_tensors="pt")
    np_inputs = ours(texts, padding=True, return_tensors="np")
    np.testing.assert_array_equal(model.generate(**pt, max_new_tokens=4, do_sample=False),
                                  model.generate(**np_inputs, max_new_tokens=4, do_sample=False))

    base = GPT2Model.from_pretrained(str(directory))
    embeds = torch.randn(1, 3, base.config.n_embd, generator=torch.Generator().manual_seed(0))
    reference = base(inputs_embeds=embeds.numpy()).last_hidden_state
    np.testing.assert_array_equal(base(inputs_embeds=embeds.clone().requires_grad_()).last_hidden_state, reference)
    np.testing.assert_allclose(base(inputs_embeds=embeds.bfloat16()).last_hidden_state,
                               base(inputs_embeds=embeds.bfloat16().float().numpy()).last_hidden_state)
    with pytest.raises(TypeError, match="inputs_embeds .*cpu"):
        base(inputs_embeds=torch.zeros(1, 3, base.config.n_embd, device="meta"))
