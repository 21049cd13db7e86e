"""Chat templates: apply_chat_template renders a conversation with a Jinja template, as transformers 4.x does.

GPT-2 itself has no template (chat_template is None, and apply_chat_template is then transformers' ValueError), but
a GPT-2 fine-tuned for chat often comes with one: in tokenizer_config.json ("chat_template") or in a
chat_template.jinja file (what transformers' save_pretrained and TRL's setup_chat_format write). Rendering needs
jinja2, which minigpt2 does not depend on (nor does transformers): without it, apply_chat_template is an ImportError
that says `pip install jinja2`.

    >>> template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\\n{% endfor %}"
    >>> tok.apply_chat_template([{"role": "user", "content": "hi"}], chat_template=template, tokenize=False)
    'user: hi\\n'
"""
from __future__ import annotations

import copy
import json
from datetime import datetime
from functools import lru_cache
from typing import Any, Dict, List, Optional, Union

NO_TEMPLATE = ("Cannot use chat template functions because tokenizer.chat_template is not set and no template "
               "argument was passed! For information about writing templates and setting the "
               "tokenizer.chat_template attribute, please see the documentation at "
               "https://huggingface.co/docs/transformers/main/en/chat_templating")  # HF's message
CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "  # HF's marker for continue_final_message


class ChatTemplates:
    """GPT2Tokenizer's chat-template methods (HF's names). self.chat_template: None, a template (str), or a dict
    of named templates (HF's form for several; "default" is used unless another name is asked for)."""

    chat_template: Union[None, str, Dict[str, str]] = None  # GPT-2 has none (transformers: None too)

    @staticmethod
    def _read_chat_template(value) -> Union[None, str, Dict[str, str]]:
        """The chat_template argument as HF keeps it: a list of {"name", "template"} (tokenizer_config.json's form
        for several templates) becomes a dict."""
        if isinstance(value, (list, tuple)):
            return {entry["name"]: entry["template"] for entry in value}
        if value is not None and not isinstance(value, (str, dict)):
            raise TypeError(f"chat_template must be a str (a Jinja template) or a dict of them, got "
                            f"{type(value).__name__}")
        return value

    def get_chat_template(self, chat_template: Optional[str] = None, tools: Optional[list] = None) -> str:
        """The template apply_chat_template uses: chat_template= (a template, or the name of one of the
        tokenizer's), else the tokenizer's own ("tool_use" when tools are given and it has one, else "default")."""
        if isinstance(self.chat_template, dict):
            templates = self.chat_template
            if chat_template is not None and chat_template in templates:
                return templates[chat_template]
            if chat_template is None:
                if tools is not None and "tool_use" in templates:
                    return templates["tool_use"]
                if "default" in templates:
                    return templates["default"]
                raise ValueError(f"This model has multiple chat templates with no default specified! Please either "
                                 f"pass a chat template or the name of the template you wish to use to the "
                                 f"`chat_template` argument. Available template names are {sorted(templates)}.")
        elif chat_template is None:
            if self.chat_template is None:
                raise ValueError(NO_TEMPLATE + " (GPT-2 has no chat template: prompt it with plain text, or pass "
                                 "chat_template=...)")
            return self.chat_template
        return chat_template

    def apply_chat_template(self, conversation, tools: Optional[List[dict]] = None,
                            documents: Optional[List[dict]] = None, chat_template: Optional[str] = None,
                            add_generation_prompt: bool = False, continue_final_message: bool = False,
                            tokenize: bool = True, padding=False, truncation: bool = False,
                            max_length: Optional[int] = None, return_tensors=None, return_dict: bool = False,
                            return_assistant_tokens_mask: bool = False,
                            tokenizer_kwargs: Optional[Dict[str, Any]] = None, **kwargs):
        """Render a conversation (a list of {"role", "content"} dicts, or a batch of them) with a chat template
        and, with tokenize=True (the default), encode it: the ids, or with return_dict=True the whole
        BatchEncoding. The template is chat_template= or the tokenizer's own (from the checkpoint's files).

        As transformers 4.x: jinja2's sandbox with trim_blocks and lstrip_blocks, the loopcontrols extension, a
        `tojson` filter that does not escape HTML, `raise_exception(message)` and `strftime_now(format)`; the
        template sees messages, tools, documents, add_generation_prompt, the special tokens (bos_token, ...) and
        any other keyword argument. The text is encoded without adding special tokens (the template writes them);
        padding, truncation, max_length, return_tensors and tokenizer_kwargs go to tokenizer(...).
        continue_final_message=True ends the text inside the last message, for the model to continue it.

        return_assistant_tokens_mask=True (with return_dict=True; GPT2TokenizerFast only, as in HF): an
        "assistant_masks" entry, 1 for each token of the text the template marks with
        {% generation %}...{% endgeneration %} (see _assistant_masks).

        Not supported: tools given as Python functions (pass their JSON schemas). Needs jinja2
        (`pip install jinja2`).
        """
        if return_dict and not tokenize:
            raise ValueError("`return_dict=True` is incompatible with `tokenize=False`, because there is no dict "
                             "of tokenizer outputs to return.")
        if return_assistant_tokens_mask and not return_dict:
            raise ValueError("`return_assistant_tokens_mask=True` is incompatible with `return_dict=False`")
        template = self.get_chat_template(chat_template, tools)
        if continue_final_message and add_generation_prompt:
            raise ValueError("continue_final_message and add_generation_prompt are not compatible. Use "
                             "continue_final_message when you want the model to continue the final message, and "
                             "add_generation_prompt when you want to add a header that will prompt it to start a "
                             "new assistant message instead.")
        if continue_final_message and return_assistant_tokens_mask:
            raise ValueError("continue_final_message is not compatible with return_assistant_tokens_mask.")
        for tool in tools or []:
            if not isinstance(tool, dict):
                raise TypeError("minigpt2 takes tools as JSON schemas (dicts); it does not convert Python functions")
        for document in documents or []:
            if not isinstance(document, dict):
                raise TypeError("Documents should be a list of dicts with 'title' and 'text' keys!")
        batched = isinstance(conversation, (list, tuple)) and bool(conversation) and (
            isinstance(conversation[0], (list, tuple)) or hasattr(conversation[0], "messages"))
        compiled = _compile(template)
        variables = {**self.special_tokens_map, **kwargs}  # keyword arguments win over the special tokens
        rendered, spans = [], []  # spans: per chat, the (start, end) characters of each {% generation %} block
        for chat in conversation if batched else [conversation]:
            chat = getattr(chat, "messages", chat)
            if continue_final_message:
                chat, final = _tag_final_message(chat)
            text, generated = _render(compiled, dict(messages=chat, tools=tools, documents=documents,
                                                     add_generation_prompt=add_generation_prompt, **variables))
            spans.append(generated)
            if continue_final_message:
                text = _cut_at_tag(text, final)
            rendered.append(text)
        rendered = rendered if batched else rendered[0]
        if not tokenize:
            return rendered
        out = self(rendered, padding=padding, truncation=truncation, max_length=max_length, add_special_tokens=False,
                   return_tensors=return_tensors, **(tokenizer_kwargs or {}))
        if return_assistant_tokens_mask:
            _assistant_masks(out, spans, batched, return_tensors)
        return out if return_dict else out["input_ids"]


def _render(compiled, variables):
    """The rendered text, and the (start, end) characters of each {% generation %} block in it (HF's way: the
    template's output pieces are collected as they come; a block starts where the text so far ends)."""
    pieces: List[str] = []
    compiled.environment.generation_tracking = (pieces, [])
    try:
        for piece in compiled.generate(**variables):
            pieces.append(piece)
        return "".join(pieces), compiled.environment.generation_tracking[1]
    finally:
        compiled.environment.generation_tracking = None


def _assistant_masks(out, spans, batched: bool, return_tensors) -> None:
    """out["assistant_masks"]: 1 for the tokens from the one holding a {% generation %} block's first character to
    the one holding its last (HF 4.x's rule, through char_to_token: a block whose start truncation cut off ends the
    row's mask there; one whose end it cut off runs to the end of the row)."""
    if not out.is_fast:
        raise ValueError("return_assistant_tokens_mask needs where each token is in the text (char_to_token), "
                         "which only GPT2TokenizerFast records (as in HF); use GPT2TokenizerFast")
    rows = out["input_ids"] if batched or return_tensors else [out["input_ids"]]
    masks = []
    for i, row in enumerate(rows):
        mask = [0] * len(row)
        for start, end in spans[i]:
            first, last = out.char_to_token(i, start), out.char_to_token(i, end - 1)
            if first is None:
                break
            for t in range(first, last + 1 if last else len(row)):  # (HF: a last token of 0 counts as none)
                mask[t] = 1
        masks.append(mask)
    out["assistant_masks"] = masks if batched or return_tensors else masks[0]
    if return_tensors:
        out.convert_to_tensors(return_tensors)


def _tag_final_message(chat):
    """A copy of the chat whose last message ends with HF's marker; and that message's text."""
    chat = copy.deepcopy(list(chat))
    content = chat[-1]["content"]
    if isinstance(content, (list, tuple)):  # content blocks: the last one with text
        for block in reversed(content):
            if "text" in block:
                final = block["text"]
                block["text"] += CONTINUE_TAG
                return chat, final
        raise ValueError("continue_final_message is set but we could not find any text to continue in the final "
                         "message!")
    chat[-1]["content"] = content + CONTINUE_TAG
    return chat, content


def _cut_at_tag(text: str, final: str) -> str:
    """The rendered text up to the marker (HF's rule, also when the template trimmed the space after it)."""
    if final.strip() not in text or CONTINUE_TAG.strip() not in text:
        raise ValueError("continue_final_message is set but the final message does not appear in the chat after "
                         "applying the chat template! This can happen if the chat template deletes portions of "
                         "the final message. Please verify the chat template and final message in your chat to "
                         "ensure they are compatible.")
    at = text.rindex(CONTINUE_TAG.strip())
    if text[at:at + len(CONTINUE_TAG)] == CONTINUE_TAG:
        return text[:at]
    return text[:at].rstrip()


@lru_cache(maxsize=16)
def _compile(template: str):
    """The template compiled in transformers' environment (jinja2 is imported only here: it is optional)."""
    try:
        import jinja2
        import jinja2.ext
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        raise ImportError("apply_chat_template requires jinja2 to be installed. Please install it using "
                          "`pip install jinja2`.") from None

    class GenerationTag(jinja2.ext.Extension):
        """{% generation %}...{% endgeneration %}, which templates use to mark the assistant's text: it renders its
        body unchanged and, while _render tracks (environment.generation_tracking = (pieces so far, spans)),
        records where that body is in the text, for return_assistant_tokens_mask. As transformers 4.57, a block
        rendered before any other output is not recorded (its tracker counts as off then; transformers 5 records it)."""

        tags = {"generation"}

        def __init__(self, environment):
            super().__init__(environment)
            environment.extend(generation_tracking=None)

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller):
            text = caller()
            tracking = self.environment.generation_tracking
            if tracking is not None and (tracking[0] or tracking[1]):
                start = len("".join(tracking[0]))
                tracking[1].append((start, start + len(text)))
            return text

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        # HF replaces jinja2's tojson, which escapes HTML characters
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.now().strftime(format)

    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                extensions=[GenerationTag, jinja2.ext.loopcontrols])
    environment.filters["tojson"] = tojson
    environment.globals["raise_exception"] = raise_exception
    environment.globals["strftime_now"] = strftime_now
    return environment.from_string(template)
