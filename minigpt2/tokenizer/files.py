"""The tokenizer's files: from_pretrained (bundled names, a directory, or a Hub repository through minigpt2.hub)
and save_pretrained, in HF's formats (vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json,
added_tokens.json, chat_template.jinja, and the fast tokenizer's tokenizer.json; transformers 5's tokenizer_config.json
is read too)."""
from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Union

from ..bpe import VocabularyFileError, check_consistent, parse_encoder, read_text
from ..hub import checkpoint_name, pop_hub_options, resolve_file
from .vocabulary import SPECIAL_TOKENS_ATTRIBUTES, AddedToken

if TYPE_CHECKING:
    from .gpt2 import GPT2Tokenizer

logger = logging.getLogger("minigpt2.tokenizer")

# The checkpoints that share GPT-2's vocabulary; from_pretrained serves them from the bundled files.
BUNDLED_NAMES = frozenset(
    name
    for base in ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "distilgpt2")
    for name in (base, f"openai-community/{base}")
) | {"distilbert/distilgpt2"}
GPT2_MAX_LENGTH = 1024  # n_positions of every GPT-2 size; tokenizer_config.json on the Hub says the same


class MissingTokenizerFiles(Exception):
    """Marks the error of a checkpoint that has no tokenizer files at all (not damaged ones, not a network
    failure): a directory (a VocabularyFileError) or a Hub repository (a FileNotFoundError). The CLI then uses
    GPT-2's vocabulary, which every GPT-2 checkpoint shares."""


class _NoVocabularyInDirectory(MissingTokenizerFiles, VocabularyFileError):
    pass


class _NoTokenizerInRepository(MissingTokenizerFiles, FileNotFoundError):
    pass



class Files:
    """GPT2Tokenizer's from_pretrained and save_pretrained."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Union[str, os.PathLike], *init_inputs,
                        **kwargs) -> "GPT2Tokenizer":
        """Load a tokenizer by name or from a directory.

        * "gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "distilgpt2" (also "openai-community/...") use the
          bundled vocabulary: no network, no files;
        * a directory: vocab.json + merges.txt (or encoder.json + vocab.bpe, or tokenizer.json), plus
          tokenizer_config.json, special_tokens_map.json and added_tokens.json when present;
        * any other "owner/repo": the same files fetched from the Hub with minigpt2.hub and its options
          (minigpt2.hub.HUB_OPTIONS: revision, cache_dir, token, local_files_only, force_download, subfolder;
          HF_ENDPOINT, HF_HUB_CACHE and HF_HUB_OFFLINE apply).
        Other keyword arguments override the files' settings: from_pretrained("gpt2", pad_token="<|endoftext|>").
        """
        if init_inputs:
            raise TypeError("from_pretrained takes the name or directory, then keyword arguments only")
        hub_options = pop_hub_options(kwargs)
        name = checkpoint_name(pretrained_model_name_or_path)
        subfolder = hub_options.get("subfolder") or ""
        directory = os.path.join(name, subfolder) if subfolder else name
        if os.path.isdir(directory):
            files = _local_files(directory)
        elif name in BUNDLED_NAMES and not subfolder:
            files = {}
            kwargs.setdefault("model_max_length", GPT2_MAX_LENGTH)
        else:
            files = _hub_files(name, hub_options)
        return cls._from_files(files, name, kwargs)

    @classmethod
    def _from_files(cls, files: Dict[str, Optional[str]], name: str, kwargs: Dict[str, Any]) -> "GPT2Tokenizer":
        config: Dict[str, Any] = {}
        if files.get("tokenizer_config.json"):
            config = _read_json(files["tokenizer_config.json"])
            tokenizer_class = config.get("tokenizer_class")
            if tokenizer_class and tokenizer_class.replace("Fast", "") != "GPT2Tokenizer":
                logger.warning("%s declares tokenizer_class=%r; loading it as GPT-2's byte-level BPE tokenizer",
                               name, tokenizer_class)
        for key in ("tokenizer_class", "name_or_path", "special_tokens_map_file", "auto_map", "tokenizer_file",
                    "vocab_file", "merges_file"):
            config.pop(key, None)
        if files.get("special_tokens_map.json"):
            for key, value in _read_json(files["special_tokens_map.json"]).items():
                if key in SPECIAL_TOKENS_ATTRIBUTES or key == "additional_special_tokens":
                    config[key] = value
        if files.get("added_tokens.json") and "added_tokens_decoder" not in config:
            special = {str(AddedToken.from_config(config[k])) for k in SPECIAL_TOKENS_ATTRIBUTES if config.get(k)}
            special |= {str(AddedToken.from_config(t)) for t in config.get("additional_special_tokens") or []}
            config["added_tokens_decoder"] = {
                int(index): AddedToken(content, normalized=content not in special, special=content in special)
                for content, index in _read_json(files["added_tokens.json"]).items()}
        for key in SPECIAL_TOKENS_ATTRIBUTES:
            if isinstance(config.get(key), dict):
                config[key] = AddedToken.from_config(config[key])
        templates = {name: read_text(path) for name, path in (files.get("chat_templates") or {}).items()}
        if templates:  # HF: the .jinja files win over tokenizer_config.json's "chat_template"
            config["chat_template"] = templates["default"] if list(templates) == ["default"] else templates
        config.update(kwargs)
        config.setdefault("name_or_path", name)
        if cls.is_fast and files.get("tokenizer.json"):  # HF's fast tokenizer reads its sides from the file too
            for key, value in _padding_and_truncation(files["tokenizer.json"]).items():
                config.setdefault(key, value)
        if files.get("vocab") and files.get("merges"):
            return cls(files["vocab"], files["merges"], **config)
        if files.get("tokenizer.json"):
            return cls(tokenizer_file=files["tokenizer.json"], **config)
        return cls(**config)  # the bundled vocabulary

    def save_pretrained(self, save_directory: Union[str, os.PathLike], legacy_format=None,
                        filename_prefix: Optional[str] = None, **kwargs) -> Tuple[str, ...]:
        """Write vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json (and added_tokens.json)
        in HF's formats, so transformers' GPT2Tokenizer.from_pretrained(save_directory) loads the same tokenizer;
        GPT2TokenizerFast also writes tokenizer.json, the `tokenizers` library's file, as HF's fast tokenizer does.
        legacy_format as HF's: None writes both kinds of file, True only the slow tokenizer's (vocab.json,
        merges.txt), False only tokenizer.json (a fast tokenizer only)."""
        if legacy_format not in (None, True, False):
            raise TypeError(f"legacy_format must be None, True or False, not {legacy_format!r}")
        if legacy_format is False and not self.is_fast:
            raise ValueError("only a fast tokenizer (GPT2TokenizerFast) saves in the non-legacy format "
                             "(legacy_format=False: tokenizer.json alone); GPT2Tokenizer writes vocab.json and "
                             "merges.txt")
        save_directory = os.fspath(save_directory)
        if os.path.isfile(save_directory):
            raise ValueError(f"save_pretrained needs a directory, but {save_directory} is a file")
        os.makedirs(save_directory, exist_ok=True)
        prefix = filename_prefix + "-" if filename_prefix else ""
        path = lambda name: os.path.join(save_directory, prefix + name)  # noqa: E731

        def token_config(token: AddedToken, with_special: bool) -> Dict[str, Any]:
            state = token.__getstate__()
            if not with_special:
                state.pop("special")
            return state

        config: Dict[str, Any] = {
            "add_bos_token": self.add_bos_token,
            "add_prefix_space": self.add_prefix_space,
            "added_tokens_decoder": {str(i): token_config(t, True) for i, t in self.added_tokens_decoder.items()},
        }
        for name in SPECIAL_TOKENS_ATTRIBUTES:
            if self._special_tokens.get(name) is not None or name in ("bos_token", "eos_token", "unk_token", "pad_token"):
                config[name] = getattr(self, name)
        if self._additional_special_tokens:
            config["additional_special_tokens"] = self.additional_special_tokens
        config.update({
            "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces,
            "errors": self.errors,
            "model_max_length": self.model_max_length,
            "tokenizer_class": "GPT2Tokenizer",
        })
        if self.padding_side != "right":
            config["padding_side"] = self.padding_side
        if self.truncation_side != "right":
            config["truncation_side"] = self.truncation_side
        if self.split_special_tokens:
            config["split_special_tokens"] = True
        if self.model_input_names != type(self).model_input_names:
            config["model_input_names"] = list(self.model_input_names)
        config = dict(sorted(config.items()))
        special_map: Dict[str, Any] = {name: token_config(token, False) for name, token in self._special_tokens.items()
                                       if token is not None}
        if self._additional_special_tokens:
            special_map["additional_special_tokens"] = [token_config(t, False) for t in self._additional_special_tokens]
        written = []
        for name, content in (("tokenizer_config.json", config), ("special_tokens_map.json", special_map)):
            _write_text(path(name), json.dumps(content, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
            written.append(path(name))
        if legacy_format is not False:
            _write_text(path("vocab.json"),
                        json.dumps(self.encoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
            _write_text(path("merges.txt"), "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in self._bpe.merges))
            written += [path("vocab.json"), path("merges.txt")]
        if self.is_fast and legacy_format is not True:
            _write_text(path("tokenizer.json"),
                        json.dumps(self._tokenizer_json(), indent=2, ensure_ascii=False) + "\n")
            written.append(path("tokenizer.json"))
        extra = {t.content: i for i, t in self.added_tokens_decoder.items() if i >= self.vocab_size}
        if extra and legacy_format is not False:
            _write_text(path("added_tokens.json"),
                        json.dumps(extra, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
            written.append(path("added_tokens.json"))
        written += self._save_chat_templates(save_directory, prefix)
        return tuple(written)

    def _tokenizer_json(self) -> Dict[str, Any]:
        """The tokenizer as the `tokenizers` library's tokenizer.json describes it, with what transformers'
        converter (GPT2Converter) makes of a GPT-2 tokenizer: a byte-level BPE, its added tokens, and with
        add_bos_token a template that puts <|endoftext|> (the bos token) in front. Merges as "a b" strings, which
        every version of `tokenizers` reads (byte-level tokens never hold a space)."""
        byte_level = lambda add_prefix_space, trim_offsets: {  # noqa: E731
            "type": "ByteLevel", "add_prefix_space": add_prefix_space, "trim_offsets": trim_offsets, "use_regex": True}
        if self.add_bos_token and self.bos_token is not None:
            bos = {"SpecialToken": {"id": self.bos_token, "type_id": 0}}
            sequence = lambda name, type_id: {"Sequence": {"id": name, "type_id": type_id}}  # noqa: E731
            post_processor = {"type": "TemplateProcessing", "single": [bos, sequence("A", 0)],
                              "pair": [bos, sequence("A", 0), sequence("B", 1)],
                              "special_tokens": {self.bos_token: {"id": self.bos_token, "ids": [self.bos_token_id],
                                                                  "tokens": [self.bos_token]}}}
        else:
            post_processor = byte_level(True, False)
        return {
            "version": "1.0", "truncation": None, "padding": None,
            "added_tokens": [{"id": i, **token.__getstate__()}
                             for i, token in sorted(self.added_tokens_decoder.items())],
            "normalizer": None,
            "pre_tokenizer": byte_level(self.add_prefix_space, True),
            "post_processor": post_processor,
            "decoder": byte_level(True, True),
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                      "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                      "vocab": self.encoder, "merges": [f"{a} {b}" for a, b in self._bpe.merges]},
        }

    def _save_chat_templates(self, save_directory: str, prefix: str) -> List[str]:
        """As transformers 4.x: the template in chat_template.jinja; of several, "default" there and the others in
        additional_chat_templates/<name>.jinja."""
        templates = self.chat_template
        if templates is None:
            return []
        if isinstance(templates, str):
            templates = {"default": templates}
        written = []
        for name, template in templates.items():
            if name == "default":
                where = os.path.join(save_directory, prefix + CHAT_TEMPLATE_FILE)
            else:
                os.makedirs(os.path.join(save_directory, prefix + CHAT_TEMPLATE_DIR), exist_ok=True)
                where = os.path.join(save_directory, prefix + CHAT_TEMPLATE_DIR, name + ".jinja")
            _write_text(where, template)
            written.append(where)
        return written

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name_or_path={self.name_or_path!r}, vocab_size={self.vocab_size}, "
                f"model_max_length={self.model_max_length}, padding_side={self.padding_side!r}, "
                f"special_tokens={self.special_tokens_map}, added_tokens={len(self) - self.vocab_size})")



_OPTIONAL_FILES = ("tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")
CHAT_TEMPLATE_FILE = "chat_template.jinja"  # transformers' names
CHAT_TEMPLATE_DIR = "additional_chat_templates"


def _read_json(path: str) -> Any:
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise VocabularyFileError(f"{path}: not valid JSON ({e})") from None


def _local_files(directory: str) -> Dict[str, Optional[str]]:
    def find(*names):
        for n in names:
            if os.path.isfile(os.path.join(directory, n)):
                return os.path.join(directory, n)
        return None

    files: Dict[str, Optional[str]] = {
        "vocab": find("vocab.json", "encoder.json", "vocab.json.gz", "encoder.json.gz"),
        "merges": find("merges.txt", "vocab.bpe", "merges.txt.gz", "vocab.bpe.gz"),
        "tokenizer.json": find("tokenizer.json"),
    }
    files.update({n: find(n) for n in _OPTIONAL_FILES})
    files["chat_templates"] = templates = {}  # name -> file
    if find(CHAT_TEMPLATE_FILE):
        templates["default"] = find(CHAT_TEMPLATE_FILE)
    extra = os.path.join(directory, CHAT_TEMPLATE_DIR)
    for name in sorted(os.listdir(extra)) if os.path.isdir(extra) else []:
        if name.endswith(".jinja"):
            templates[name[:-len(".jinja")]] = os.path.join(extra, name)
    if bool(files["vocab"]) != bool(files["merges"]) and not files["tokenizer.json"]:
        raise VocabularyFileError(_half_a_tokenizer(directory, files["vocab"] or files["merges"]))
    if not (files["vocab"] and files["merges"]) and not files["tokenizer.json"]:
        raise _NoVocabularyInDirectory(f"{directory} holds no GPT-2 vocabulary: expected vocab.json + merges.txt, "
                                  f"encoder.json + vocab.bpe, or tokenizer.json (for GPT-2's own vocabulary, "
                                  f"use from_pretrained('gpt2'))")
    return files


# Each half of a BPE vocabulary -> the file that completes it (HF's names, then OpenAI's)
_OTHER_HALF = {"vocab.json": "merges.txt", "encoder.json": "vocab.bpe", "merges.txt": "vocab.json",
               "vocab.bpe": "encoder.json"}


def _half_a_tokenizer(where: str, present: str) -> str:
    """The error for a checkpoint with one of the two files of a BPE vocabulary: falling back to GPT-2's own
    would silently tokenize with other ids (transformers cannot load it either)."""
    have = os.path.basename(present)
    missing = _OTHER_HALF.get(have.replace(".gz", ""), "merges.txt")
    return (f"{where} has {have} but no {missing}: a GPT-2 tokenizer needs both (or a tokenizer.json). Copy "
            f"{missing} from where {have} came from; or, if the model uses GPT-2's own vocabulary, remove {have} "
            f"and use GPT-2's (AutoTokenizer.from_pretrained('gpt2'); the command line then does so by itself)")


def _hub_files(repo_id: str, hub_options: Dict[str, Any]) -> Dict[str, Optional[str]]:
    """Fetch a Hub repository's tokenizer files with minigpt2.hub (huggingface_hub, imported only when needed).

    HF_ENDPOINT, HF_HUB_CACHE and HF_HUB_OFFLINE apply as for the model's weights."""

    def fetch(filename: str, required: bool) -> Optional[str]:
        return resolve_file(repo_id, filename, required=required, **hub_options)

    offline_names = ", ".join(sorted(n for n in BUNDLED_NAMES if "/" not in n))
    try:
        files: Dict[str, Optional[str]] = {"vocab": fetch("vocab.json", required=False)}
        files["merges"] = fetch("merges.txt", required=False) if files["vocab"] else None
        files["tokenizer.json"] = None if files["merges"] else fetch("tokenizer.json", required=False)
        if files["vocab"] and not files["merges"] and not files["tokenizer.json"]:
            raise VocabularyFileError(_half_a_tokenizer(f"the repository {repo_id!r}", "vocab.json"))
        if not files["merges"] and not files["tokenizer.json"]:
            raise _NoTokenizerInRepository(f"the repository {repo_id!r} has no GPT-2 tokenizer files (vocab.json + "
                                           f"merges.txt, or tokenizer.json)")
        for name in _OPTIONAL_FILES:
            files[name] = fetch(name, required=False)
        template = fetch(CHAT_TEMPLATE_FILE, required=False)  # (the additional ones are not looked for)
        files["chat_templates"] = {"default": template} if template else {}
    except OSError as e:
        error = _NoTokenizerInRepository if isinstance(e, MissingTokenizerFiles) else OSError
        raise error(f"could not load a tokenizer for {repo_id!r}: {e} (the names {offline_names} work offline, "
                    f"with the bundled vocabulary; a local directory works too)") from e
    return files


def _padding_and_truncation(path: str) -> Dict[str, Any]:
    """What HF's fast tokenizer takes from tokenizer.json's "padding" and "truncation" (written by a tokenizer that
    had padded or truncated): padding_side, pad_token, truncation_side, unless tokenizer_config.json says."""
    data = _read_json(path)
    padding, truncation = data.get("padding") or {}, data.get("truncation") or {}
    settings = {"padding_side": padding.get("direction"), "pad_token": padding.get("pad_token"),
                "truncation_side": truncation.get("direction")}
    return {k: v.lower() if k.endswith("_side") else v for k, v in settings.items() if isinstance(v, str)}


def _read_tokenizer_json(path: str) -> Tuple[Dict[str, int], List[Tuple[str, str]], List[Dict[str, Any]]]:
    """HF's tokenizer.json (the Rust tokenizers format) -> encoder, merges, added tokens; byte-level BPE only."""
    data = _read_json(path)
    model = data.get("model") or {}
    if model.get("type", "BPE") != "BPE":
        raise VocabularyFileError(f"{path}: not a BPE tokenizer (model type {model.get('type')!r}); GPT-2's is a "
                                  f"byte-level BPE")
    missing = [key for key in ("vocab", "merges") if key not in model]
    if missing:  # (the tokenizers library refuses it too: "Missing vocab/merges")
        raise VocabularyFileError(f"{path}: its BPE model has no {' and no '.join(map(repr, missing))}; a GPT-2 "
                                  f"tokenizer.json holds both under \"model\" (or use vocab.json + merges.txt)")
    pre = json.dumps(data.get("pre_tokenizer") or {})
    if "ByteLevel" not in pre:
        raise VocabularyFileError(f"{path}: not a byte-level BPE tokenizer like GPT-2's (pre_tokenizer {pre[:80]})")
    encoder = parse_encoder(json.dumps(model["vocab"]), path)
    merges = []
    for n, merge in enumerate(model["merges"]):
        parts = merge.split(" ") if isinstance(merge, str) else list(merge)
        if len(parts) != 2:
            raise VocabularyFileError(f"{path}: merge {n} is {merge!r}, not a pair")
        merges.append((parts[0], parts[1]))
    check_consistent(encoder, merges, path, path)
    return encoder, merges, list(data.get("added_tokens") or [])


def _write_text(path: str, text: str) -> None:
    """Write a file whole or not at all: into a fresh name beside it, then renamed over it (a disk that fills up
    midway leaves the file saved before as it was, and no partial file)."""
    partial = f"{path}.{os.getpid()}.partial"
    try:
        with open(partial, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(partial, path)
    except BaseException:
        if os.path.exists(partial):
            os.unlink(partial)
        raise
