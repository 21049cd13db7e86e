"""The command line: ``python -m minigpt2 "prompt"`` continues the prompt with GPT-2, printing as it goes.

Everything that is not an option is the prompt. The other things the command does (show tokens, download
a model, show the setup) are options too, so no prompt can be taken for a command:
``python -m minigpt2 tokenize`` continues the text "tokenize"; ``python -m minigpt2 --tokenize "Hi"`` shows
tokens. Exit codes: 0 done, 1 error (a one-line message), 2 wrong usage, 130 interrupted by Ctrl-C.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import re
import sys
import time
import warnings

import numpy as np

from . import __version__
from .cli_checks import (TEMPERATURE_RANGE, ArgumentParser, HelpFormatter, NamedStdout, StdoutWriteError,
                         kernel_without_c_core, negative_values_attached, not_enough_memory, one_line_warning,
                         say_calibration_ahead, say_threads_do_nothing, stopped_writing, escaped)

__all__ = ["main", "build_parser"]

DEFAULT_MODEL = "gpt2"
DEFAULT_MAX_NEW_TOKENS = 50

EXAMPLES = """\
examples:
  python -m minigpt2 "The meaning of life is"            sample 50 tokens from gpt2 (downloaded once)
  python -m minigpt2 -n 20 --greedy "Once upon a time"   the most likely token at each step
  python -m minigpt2 -t 0.7 -k 40 -s 1 "Hello"           cooler sampling, reproducible with a seed
  python -m minigpt2 --beams 4 -N 2 "The weather"        beam search, the 2 best of 4 beams
  python -m minigpt2 --candidates 5 -n 8 "The cat"       workshop: the 5 likeliest tokens at every step
  echo "Dear diary," | python -m minigpt2 --stats        the prompt from stdin; speed on stderr
  python -m minigpt2 --dtype bfloat16 "Hello"            weights in 16 bits: half the memory
  python -m minigpt2 -m ./my-checkpoint "Hi"             a local directory: no network
  python -m minigpt2 --tokenize "Hello world"            how a text splits into tokens
  python -m minigpt2 --download -m gpt2-medium           fetch a model now, use it offline later
  python -m minigpt2 --info                              versions, backend, cache, Hub settings
  python -m minigpt2 --doctor                            workshop pre-flight check (exit 1 if not ready)

commands are options (--tokenize, --download, --info, --doctor, --version), never words, so any text can be a prompt:
"python -m minigpt2 tokenize" continues the text "tokenize". A prompt that starts with "-" goes after
"--": python -m minigpt2 -- "-5 degrees outside, and". The one exception is "train" as the first
argument (python -m minigpt2 train --help); the prompt "train" is python -m minigpt2 -- train.

environment: HF_ENDPOINT (a Hub mirror, e.g. https://hf-mirror.com), HF_HUB_CACHE / HF_HOME (where models
are kept), HF_TOKEN (private models), HF_HUB_OFFLINE=1 (cache only), MINIGPT2_BACKEND, MINIGPT2_NUM_THREADS,
MINIGPT2_KERNEL (docs/troubleshooting.md).

exit codes: 0 done, 1 error, 2 wrong usage, 130 interrupted (Ctrl-C keeps the text printed so far).
"""


class UsageError(Exception):
    """A wrong combination of arguments: exit code 2."""


def build_parser(prog: str = "python -m minigpt2") -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog=prog,
        usage="%(prog)s [options] [PROMPT ...]\n       %(prog)s --tokenize TEXT | --download | --info\n"
              "       %(prog)s --doctor | --version",  # (each line within 80 columns)
        description="Continue a text with GPT-2, printing it as it is generated (NumPy, on the CPU).",
        epilog=EXAMPLES, formatter_class=HelpFormatter)
    p.add_argument("prompt", nargs="*", metavar="PROMPT",
                   help='the text to continue; several words are joined with spaces. "-", or nothing with piped '
                        'input, reads it from stdin. An empty prompt ("", or "-" with empty stdin) starts a new text '
                        'from <|endoftext|>; nothing at all (no PROMPT, empty stdin) is an error.')
    g = p.add_argument_group("generation")
    g.add_argument("-m", "--model", default=DEFAULT_MODEL, metavar="NAME_OR_DIR",
                   help=f"a Hub name (gpt2, gpt2-medium, gpt2-large, gpt2-xl, distilgpt2, owner/name) or a "
                        f"directory with config.json and model.safetensors (default: {DEFAULT_MODEL})")
    g.add_argument("-n", "--max-new-tokens", type=_positive_int, default=DEFAULT_MAX_NEW_TOKENS, metavar="N",
                   help=f"how many tokens to add (default: {DEFAULT_MAX_NEW_TOKENS})")
    g.add_argument("-t", "--temperature", type=_temperature, metavar="T",
                   help=f"{TEMPERATURE_RANGE[0]:g} to {TEMPERATURE_RANGE[1]:g}; below 1 is more predictable, above 1 "
                        f"more surprising (default: 1.0). Below {TEMPERATURE_RANGE[0]:g} sampling is greedy decoding "
                        f"(--greedy); above {TEMPERATURE_RANGE[1]:g} every allowed token is about equally likely; far "
                        f"outside, float32 scores overflow")
    g.add_argument("-k", "--top-k", type=_non_negative_int, metavar="K",
                   help="sample only from the K likeliest tokens; 0 = all (default: 50)")
    g.add_argument("-p", "--top-p", type=_probability, metavar="P",
                   help="sample only from the likeliest tokens that make up probability P, in (0, 1] (default: 1)")
    g.add_argument("--greedy", action="store_true", help="always take the likeliest token (no randomness)")
    g.add_argument("--beams", type=_positive_int, metavar="N", help="beam search with N beams (no randomness)")
    g.add_argument("-s", "--seed", type=_non_negative_int, metavar="S", help="make sampling reproducible")
    g.add_argument("-N", "--num-sequences", type=_positive_int, default=1, metavar="N",
                   help="how many continuations to print (default: 1)")
    g.add_argument("--candidates", type=_positive_int, metavar="K",
                   help="workshop view: at every step, the K likeliest next tokens with their probabilities")
    r = p.add_argument_group("runtime")
    r.add_argument("--backend", choices=("auto", "numpy", "c"),
                   help="the kernels: the NumPy reference or the C core (default: $MINIGPT2_BACKEND or auto)")
    r.add_argument("--threads", type=_thread_count, metavar="N",
                   help=f"threads for the C kernels, 1 to {_max_threads()} (default: $MINIGPT2_NUM_THREADS, else "
                        f"the cores)")
    r.add_argument("--dtype", choices=("float32", "bfloat16", "float16", "int8", "auto"),
                   help="the weights' format: float32 (default), bfloat16 or float16 (half the bytes), int8 "
                        "(about a quarter), auto (as the checkpoint stores them); activations stay float32 "
                        "(docs/numerics.md)")
    r.add_argument("--stats", action="store_true", help="print time to first token and tokens/s to stderr")
    c = p.add_argument_group("commands (instead of generating)").add_mutually_exclusive_group()
    c.add_argument("--tokenize", metavar="TEXT", help='show the tokens and ids of TEXT ("-" reads stdin)')
    c.add_argument("--download", action="store_true",
                   help="download --model into the Hugging Face cache, to use it offline later")
    c.add_argument("--info", action="store_true", help="show versions, backend, threads, cache and Hub settings")
    c.add_argument("--doctor", action="store_true",
                   help="pre-flight check for a workshop: one line per check, with the fix; exit 1 if one failed")
    c.add_argument("--version", action="store_true", help='print "minigpt2 X.Y.Z"')
    return p


def _number(convert, check, allowed):
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} {_not_a(convert, text)}; expected {allowed}") from None
        if not math.isfinite(value):  # (only floats: "inf" and "nan" are not ints)
            raise argparse.ArgumentTypeError(f"{text} is not a finite number; expected {allowed}")
        if not check(value):
            raise argparse.ArgumentTypeError(f"{text} is not allowed; expected {allowed}")
        return value
    return parse


def _not_a(convert, text) -> str:
    """What ``text`` is not, when ``convert`` refused it: a number, a whole number, or a finite whole number."""
    if convert is int:
        try:
            return "is not a whole number" if math.isfinite(float(text)) else "is not a finite whole number"
        except ValueError:
            pass
    return "is not a number"


def _max_threads() -> int:
    from .backend import MAX_THREADS

    return MAX_THREADS


_positive_int = _number(int, lambda v: v > 0, "an integer >= 1")
_non_negative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
_thread_count = _number(int, lambda v: 1 <= v <= _max_threads(), f"an integer from 1 to {_max_threads()}")
_temperature = _number(float, lambda v: TEMPERATURE_RANGE[0] <= v <= TEMPERATURE_RANGE[1],
                       f"a number > 0, from {TEMPERATURE_RANGE[0]:g} to {TEMPERATURE_RANGE[1]:g} (below it sampling is "
                       f"greedy decoding: use --greedy; above it every allowed token is about equally likely; far "
                       f"outside it float32 scores overflow)")
_probability = _number(float, lambda v: 0 < v <= 1, "a number in (0, 1]")


def main(argv=None, prog: str = "python -m minigpt2") -> int:
    """Run the command line; returns the exit code (``python -m minigpt2`` exits with it). ``prog``: how the user
    started it, for the usage and error lines (the ``minigpt2`` command gives its own name)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    muted = _closed_stderr_to_devnull()
    try:
        if argv[:1] == ["train"]:  # the one word command, and only as the first argument: see training/cli.py
            try:
                from .training.cli import main as train_main
            except KeyboardInterrupt:  # (Ctrl-C while importing: training/cli.py's own handler is not there yet)
                print("\n[interrupted]", file=sys.stderr)
                return 130
            return train_main(argv[1:], prog=f"{prog} train")
        parser = build_parser(prog)
        try:
            args = parser.parse_args(negative_values_attached(parser, argv))  # exits with 2 on a usage error
        except OSError as e:  # --help into a stdout that cannot take it
            return stopped_writing(e, parser.prog)
        if sys.stdout is None:  # started with stdout closed (>&-): print() would drop everything, and exit 0
            print(f"{parser.prog}: error: stdout is closed, so there is nowhere to print to; redirect it to a file, "
                  f"or to /dev/null to discard what is printed", file=sys.stderr)
            return 1
        return _run_reporting_errors(args, parser)
    finally:
        muted()


def _run_reporting_errors(args, parser) -> int:
    restore = _tolerant_stdout()
    shown_as, stdout = warnings.formatwarning, sys.stdout
    warnings.formatwarning, sys.stdout = one_line_warning, NamedStdout(stdout)
    try:
        code = _run(args, parser)
        sys.stdout.flush()  # (what is still buffered goes out now, while a failure can be reported)
        return code
    except UsageError as e:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: {escaped(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        line_open = not getattr(sys.stdout, "ends_line", False)  # (its newline first; after an ended line, none)
        print(("\n" if line_open else "") + "[interrupted]", file=sys.stderr)
        return 130
    except MemoryError as e:  # (a ulimit -v, a 32-bit Python, many beams: NumPy names the array)
        fix = (f"try {'fewer --beams, ' if getattr(args, 'beams', None) else ''}a smaller model, or --dtype bfloat16 "
               f"or int8 (weights in less memory)")
        print(f"{parser.prog}: error: {not_enough_memory(e, fix)}", file=sys.stderr)
        return 1
    except (OSError, ValueError, TypeError) as e:  # bad model, no network, bad prompt: the user's to fix
        if isinstance(e, (BrokenPipeError, StdoutWriteError)):
            return stopped_writing(e, parser.prog)
        print(f"{parser.prog}: error: {escaped(' '.join(str(e).split()) + _repair_hint(e, args))}", file=sys.stderr)
        return 1
    finally:
        sys.stdout = stdout
        restore()
        warnings.formatwarning = shown_as


def _closed_stderr_to_devnull():
    """Started with stderr closed (2>&-), sys.stderr is None, and print(..., file=sys.stderr) then prints to stdout:
    the --stats line, notes and errors would land among the generated text. They go nowhere instead, as in any
    program whose stderr is closed. Returns what puts None back (main may run inside a program)."""
    if sys.stderr is not None:
        return lambda: None
    sys.stderr = devnull = open(os.devnull, "w")  # (it takes fd 2: no file opened later is written to by mistake)

    def restore():
        if sys.stderr is devnull:
            sys.stderr = None
            devnull.close()
    return restore


# -- text in and out, whatever the terminal's encoding ------------------------------------------------------

def _tolerant_stdout():
    """Make stdout show what its encoding cannot (a C locale's ASCII, latin-1 from PYTHONIOENCODING) as
    backslash escapes, ``café`` -> ``caf\\xe9``, instead of stopping mid-text with a UnicodeEncodeError;
    stderr does so already. Returns what puts the stream back as it was (main may run inside a notebook)."""
    stream = sys.stdout
    before = getattr(stream, "errors", None)  # "strict", or "surrogateescape" in the C locale: both stop at "é"
    if before not in ("strict", "surrogateescape") or not hasattr(stream, "reconfigure"):
        return lambda: None
    stream.reconfigure(errors="backslashreplace")
    return lambda: stream.reconfigure(errors=before) if not stream.closed else None


def _utf8_argument(text, what):
    """An argument as the UTF-8 text it was typed as. Outside a UTF-8 locale Python decodes the command line with
    the locale's encoding (ASCII for LC_ALL=C) and keeps the other bytes as lone surrogates; those bytes are
    recovered here. Bytes that are not UTF-8 at all are a usage error."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return os.fsencode(text).decode("utf-8")
    except (UnicodeError, ValueError):
        raise UsageError(f"{what} is not UTF-8 text (the bytes {_bad_bytes(os.fsencode(text))}); "
                         f"minigpt2 reads prompts as UTF-8") from None


def _bad_bytes(raw: bytes) -> str:
    """The first bytes where UTF-8 decoding fails, for an error message."""
    try:
        raw.decode("utf-8")
        return ""
    except UnicodeDecodeError as e:
        return f"{raw[e.start:e.start + 4]!r} at byte {e.start}"


def _run(args, parser) -> int:
    from . import backend

    command = "--tokenize" if args.tokenize is not None else "--download" if args.download else \
        "--info" if args.info else "--doctor" if args.doctor else "--version" if args.version else None
    if command and args.prompt:
        raise UsageError(f"{command} takes no prompt (got {' '.join(args.prompt)!r}); "
                         f"{'choose the model with --model' if command == '--download' else 'drop one of them'}")
    if command:
        from .cli_checks import refuse_ignored_flags

        refuse_ignored_flags(command, args, parser, UsageError)
    if args.version:
        print(f"minigpt2 {__version__}")
        return 0
    if args.backend is not None:
        try:
            backend.set_backend(args.backend)
        except RuntimeError as e:  # --backend c without the C core
            raise UsageError(f"--backend {args.backend}: {e}") from None
    # "no C core: running on NumPy" was held until the flags were read (--backend c / numpy contradict it)
    backend.say_fallback()
    if args.threads is not None:
        if not hasattr(backend, "set_num_threads"):
            raise UsageError("--threads: this build cannot set the number of threads")
        backend.set_num_threads(args.threads)
        say_threads_do_nothing(args.threads)
    if os.path.isfile(args.model) and not (args.info or args.doctor):
        from .hub import a_file_is_not_a_checkpoint

        raise UsageError(f"--model {a_file_is_not_a_checkpoint(args.model, flag='-m ')}")
    if args.info:
        return _info(args.dtype)
    if args.doctor:
        from .doctor import main as doctor

        return doctor()
    if args.download:
        return _download(args.model)
    if args.tokenize is not None:
        text = _read_stdin() if args.tokenize == "-" else _utf8_argument(args.tokenize, "the text of --tokenize")
        return _tokenize(text, _load_tokenizer(args.model))
    return _generate(args)


# -- generating ------------------------------------------------------------------------------------------

def _generation_settings(args) -> dict:
    """generate() arguments from the flags, refusing combinations that would silently do nothing."""
    sampling_flags = [flag for flag, value in (("--temperature", args.temperature), ("--top-k", args.top_k),
                                               ("--top-p", args.top_p), ("--seed", args.seed)) if value is not None]
    if args.greedy and args.beams:
        raise UsageError("--greedy and --beams are two different strategies; choose one")
    if (args.greedy or args.beams) and sampling_flags:
        verb = "shapes" if len(sampling_flags) == 1 else "shape"
        raise UsageError(f"{', '.join(sampling_flags)} {verb} random sampling, but "
                         f"{'--greedy' if args.greedy else '--beams'} does not sample")
    if args.greedy and args.num_sequences > 1:
        raise UsageError("--greedy has only one answer; use sampling or --beams for several sequences")
    if args.beams and args.num_sequences > args.beams:
        raise UsageError(f"--num-sequences ({args.num_sequences}) must be <= --beams ({args.beams})")
    if args.beams and args.candidates:
        raise UsageError("--candidates follows one sequence step by step; it does not work with --beams")
    if args.beams:
        return dict(do_sample=False, num_beams=args.beams, num_return_sequences=args.num_sequences)
    if args.greedy:
        return dict(do_sample=False)
    return dict(do_sample=True, temperature=1.0 if args.temperature is None else args.temperature,
                top_k=50 if args.top_k is None else args.top_k, top_p=1.0 if args.top_p is None else args.top_p)


def _generate(args) -> int:
    settings = _generation_settings(args)
    _check_backend_settings()
    prompt = _prompt_text(args.prompt)
    from . import cli_checks
    from .auto import AutoModelForCausalLM

    # The model first: its errors say most about a bad --model.
    model = AutoModelForCausalLM.from_pretrained(args.model, **_dtype_options(args.dtype))
    tokenizer = _load_tokenizer(args.model)
    # (verbose=False: a prompt too long for the model gets our own one-line error below, not the tokenizer's)
    ids = tokenizer(prompt, verbose=False).input_ids
    eos_ids = cli_checks.eos_token_ids(model.config, args.model)  # (pad_token_id: the first, as transformers)
    if not ids:  # an empty prompt ("", or "-" with empty stdin): a new text, as GPT-2 was trained to start one
        ids = [cli_checks.start_token_id(model.config, args.model)]
        print(f"[the prompt is empty: starting a new text from {tokenizer.decode(ids)}]", file=sys.stderr)
    n_positions = model.config.n_positions
    if len(ids) >= n_positions:  # (at exactly n_positions the prompt fits, but no new token does)
        why = (f"which fills all {n_positions} positions {args.model} reads: no room is left for new tokens"
               if len(ids) == n_positions else f"but {args.model} reads at most {n_positions} tokens")
        raise ValueError(f"the prompt is {len(ids)} tokens long, {why}; shorten the prompt")
    max_new = args.max_new_tokens
    if len(ids) + max_new > n_positions:
        max_new = n_positions - len(ids)
        print(f"[{args.model} reads at most {n_positions} tokens: generating "
              f"{_count(max_new, 'new token')}, not {args.max_new_tokens}]", file=sys.stderr)
    if args.beams:
        cli_checks.check_beams_fit(args.beams, model.config, len(ids), max_new, UsageError)
    if args.candidates:
        cli_checks.check_candidates(args.candidates, model.config, UsageError)
    input_ids = np.array([ids])
    rng = np.random.default_rng(args.seed)
    common = dict(max_new_tokens=max_new, pad_token_id=eos_ids[0] if eos_ids else None, **settings)
    cli_checks.say_calibration_ahead()  # the first kernel call measures them once per machine: say so before

    if args.beams:  # beam search cannot stream: the best beams are known only at the end
        start = time.perf_counter()
        sequences = model.generate(input_ids, logits_processor=[_FiniteScores(args.model)], **common)
        for i, seq in enumerate(sequences):
            if i:
                print("---")
            print(_for_terminal(prompt + tokenizer.decode(seq[len(ids):], skip_special_tokens=True)), flush=True)
        if args.stats:
            _print_stats(len(ids), sequences.shape[1] - len(ids), None, time.perf_counter() - start, len(sequences),
                         model)
        return 0

    for i in range(args.num_sequences):  # one at a time, so each one streams
        if i:
            print("---", flush=True)
        streamer = _StepPrinter(tokenizer, args.candidates, settings) if args.candidates \
            else _Printer(tokenizer, prompt)
        finite = _FiniteScores(args.model)
        try:
            sequence = model.generate(input_ids, streamer=streamer, seed=rng, logits_processor=(
                [finite, streamer] if args.candidates else [finite]), **{**common, "num_return_sequences": 1})
        except BaseException:  # Ctrl-C, or an error: what was held back and the final newline, before the message
            try:
                streamer.end()
            except OSError:  # (stdout is what failed: | head, a full disk)
                pass
            raise
        if args.stats:
            _print_stats(len(ids), sequence.shape[1] - len(ids), streamer.first_token_time - streamer.start_time,
                         streamer.end_time - streamer.start_time, 1, model)
    return 0


def _check_backend_settings():
    """A bad MINIGPT2_BACKEND (also "c" without the C core) or MINIGPT2_NUM_THREADS that no flag replaced: the
    model's first call would raise it; say it now, in one line, before the model is loaded."""
    from . import backend

    for flag, problem in getattr(backend, "_environment_problems", {}).items():
        raise ValueError(f"{_without_python_hint(problem)} (or override it with --{flag})")
    problem = kernel_without_c_core()  # (with the C core, _tuning checks it)
    if problem is not None:
        raise problem


def _without_python_hint(problem) -> str:
    """A backend setting's error without its "(or call minigpt2.backend.set_backend)": the Python API's way."""
    return re.sub(r" \(or call minigpt2\.backend\.\w+\)$", "", str(problem))



def _for_terminal(text) -> str:
    """``text`` as a terminal should show it: a control character (which a model makes as readily as a letter) as
    its escape, e.g. ``\x1b``, since a terminal obeys it: ESC starts sequences that recolour the text, move the
    cursor or retitle the window, ``\r`` goes back to the line's start and overwrites it. Into a file or a pipe the
    text goes exactly as the model made it."""
    shown = escaped(text)  # (the same object when there is nothing to escape: no isatty call per token then)
    if shown is text or not getattr(sys.stdout, "isatty", lambda: False)():
        return text
    return shown


class _FiniteScores:
    """A logits processor that stops generating, with a message, when the model's scores hold NaN or +infinity:
    weights that are not all finite numbers (a damaged or badly converted checkpoint), which would otherwise give
    greedy search and beams a meaningless token silently (NumPy's argmax picks the first NaN). -inf is a token
    ruled out (min_new_tokens, penalties), as in transformers."""

    def __init__(self, model_name):
        self.model_name, self.step = model_name, 0

    def __call__(self, input_ids, scores):
        self.step += 1
        top = scores.max()  # (one pass: NaN anywhere makes the max NaN)
        if np.isnan(top) or top == np.inf:
            raise ValueError(f"the scores {self.model_name} gives the next token (new token {self.step}) are not all "
                             f"finite numbers (NaN or infinity): its weights likely hold NaN or infinity, from a "
                             f"damaged or badly converted checkpoint; check the weights file")
        return scores


class _Printer:
    """A TextStreamer to stdout that also notes when tokens arrive (for --stats). The prompt is shown as typed (a
    special token in it too, which decoding with skip_special_tokens would drop), then the new text."""

    def __init__(self, tokenizer, prompt):
        from .streamers import TextStreamer

        self.text = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        show = self.text.on_finalized_text
        self.text.on_finalized_text = lambda text, stream_end=False: show(_for_terminal(text), stream_end)
        if prompt:
            show(_for_terminal(prompt))
        self.start_time = time.perf_counter()
        self.first_token_time = self.end_time = None
        self.prompt_seen = False

    def put(self, value):
        if self.prompt_seen and self.first_token_time is None:
            self.first_token_time = time.perf_counter()
        self.prompt_seen = True
        self.text.put(value)

    def end(self):
        self.end_time = time.perf_counter()
        self.text.end()


class _StepPrinter:
    """--candidates: one line per step with the likeliest tokens and their probabilities, then the choice.

    It is both a logits processor (it sees each step's scores; generate applies the penalties before it and
    temperature / top-k / top-p after it, so it applies those itself to show the distribution actually drawn
    from) and a streamer (it learns which token was chosen).
    """

    def __init__(self, tokenizer, k, settings):
        from .generation import GenerationConfig, LogitsProcessorList, sampling_warpers

        self.tokenizer, self.k = tokenizer, k
        self.warpers = LogitsProcessorList()  # generate's own sampling warpers, built by the same function
        if settings.get("do_sample"):
            self.warpers = sampling_warpers(GenerationConfig(**{name: settings[name] for name in
                                                                ("do_sample", "temperature", "top_k", "top_p")}))
        self.probs, self.ids, self.step = None, [], 0
        self.start_time, self.first_token_time, self.end_time = time.perf_counter(), None, None

    def __call__(self, input_ids, scores):  # as a logits processor: look, change nothing
        from .layers import softmax

        self.scores = np.array(scores[0])  # (before the warpers: they may change it)
        self.probs = softmax(self.warpers(input_ids, scores))[0]
        return scores

    def put(self, value):
        ids = np.asarray(value).reshape(-1).tolist()
        if not self.ids:  # the prompt
            self.ids = ids
            print(f"prompt: {self.tokenizer.decode(ids)!r}", flush=True)
            return
        self.first_token_time = self.first_token_time or time.perf_counter()
        self.ids += ids
        self.step += 1
        top = np.lexsort((-self.scores, -self.probs))[:self.k]  # (tokens top-k / top-p left out: by their scores)
        shown = "  ".join(f"{self._show(t):>12} {100 * self.probs[t]:5.1f}%" for t in top)
        print(f"{self.step:4d}  {shown}   -> {self._show(ids[0])} ({100 * self.probs[ids[0]]:.1f}%)", flush=True)

    def end(self):
        self.end_time = time.perf_counter()
        print(f"text: {_for_terminal(self.tokenizer.decode(self.ids))}", flush=True)

    def _show(self, token_id):
        return _token_text(self.tokenizer, token_id)


def _dtype_options(dtype) -> dict:
    """from_pretrained's arguments for --dtype."""
    if dtype is None:
        return {}
    return dict(load_in_8bit=True) if dtype == "int8" else dict(torch_dtype=dtype)


def _count(n, noun) -> str:
    """"1 token", "2 tokens"."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _print_stats(prompt_tokens, new_tokens, first_token_seconds, total_seconds, sequences, model):
    from . import backend, checkpoint

    parts = [f"prompt {_count(prompt_tokens, 'token')}, {_count(new_tokens, 'new token')} x {sequences}"]
    if first_token_seconds is not None:
        parts.append(f"time to first token {first_token_seconds:.3f} s")
        if new_tokens > 1:
            rate = (new_tokens - 1) / max(total_seconds - first_token_seconds, 1e-9)
            parts.append(f"{rate:.1f} tokens/s after it")
    else:
        parts.append(f"{new_tokens * sequences / max(total_seconds, 1e-9):.1f} tokens/s")
    weight_bytes = sum(w.nbytes for w in checkpoint.flatten(model.params).values())
    parts.append(f"total {total_seconds:.3f} s, backend {backend.get_backend()}, weights {model.dtype} "
                 f"({weight_bytes / 1e6:.1f} MB)")
    print("[" + "; ".join(parts) + "]", file=sys.stderr)


def _prompt_text(words) -> str:
    if words == ["-"]:
        return _read_stdin()
    if not words and sys.stdin is not None and not sys.stdin.isatty():  # (None: stdin closed, <&-)
        text = _read_stdin()
        if not text:  # (nothing piped in, or stdin is /dev/null: no prompt was given; "" or "-" ask for an empty one)
            raise UsageError('no prompt: nothing was given and stdin was empty. Give one, e.g. python -m minigpt2 '
                             '"Once upon a time", or pipe it in (echo "Once upon a time" | python -m minigpt2); '
                             'an empty prompt, "", starts a new text from <|endoftext|>')
        return text
    if not words:
        raise UsageError('give a prompt, e.g. python -m minigpt2 "Once upon a time" (or pipe it in)')
    return " ".join(_utf8_argument(word, "the prompt") for word in words)


def _read_stdin() -> str:
    """The text on stdin, decoded as UTF-8 whatever the locale says (the newline that ends what was typed or echoed
    is not part of it). Bytes that are not UTF-8 are an error that says so. A UTF-8 byte order mark at the start, which
    Windows editors (Notepad, PowerShell's Out-File) write, is not part of the text either."""
    if sys.stdin is None:
        raise ValueError("stdin is closed (<&-), so there is nothing to read from it; give the text as an argument, "
                         "or pipe it in")
    raw = getattr(sys.stdin, "buffer", None)
    if raw is None:  # a StringIO put in its place (tests, notebooks): already text
        text = sys.stdin.read()
    else:
        data = raw.read()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"stdin is not UTF-8 text (the bytes {_bad_bytes(data)}); save the prompt as UTF-8 "
                             f"(e.g. iconv -f latin1 -t utf-8 file.txt | python -m minigpt2)") from None
        text = text.replace("\r\n", "\n").replace("\r", "\n")  # as text mode reads it
    return text[text.startswith("\ufeff"):].rstrip("\r\n")


def _load_tokenizer(model):
    """The model's tokenizer; a checkpoint (directory or Hub repository) without tokenizer files gets GPT-2's
    (GPT-2 checkpoints all share it)."""
    from .tokenizer import AutoTokenizer, MissingTokenizerFiles

    try:
        return AutoTokenizer.from_pretrained(model)
    except MissingTokenizerFiles:  # (damaged files, no network, ... stay errors)
        print(f"[{model} has no tokenizer files: using GPT-2's vocabulary]", file=sys.stderr)
        return AutoTokenizer.from_pretrained("gpt2")


def _token_text(tokenizer, token_id) -> str:
    """What a token stands for: its text, or its bytes when it holds only part of a character (emoji, CJK)."""
    raw = tokenizer.token_bytes(int(token_id))
    try:
        return repr(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return repr(raw)


# -- the other commands ----------------------------------------------------------------------------------

def _tokenize(text, tokenizer) -> int:
    ids = tokenizer(text, verbose=False).input_ids
    tokens = [_as_shown(token) for token in tokenizer.convert_ids_to_tokens(ids)]
    width = max([len(t) for t in tokens] + [5])
    print(f"{'index':>5}  {'id':>6}  {'token':<{width}}  text")
    for i, (token_id, token) in enumerate(zip(ids, tokens)):
        print(f"{i:>5}  {token_id:>6}  {token:<{width}}  {_token_text(tokenizer, token_id)}")
    print(f"{_count(len(ids), 'token')} for {_count(len(text), 'character')} (Ġ is how the vocabulary writes a "
          f"space; b'...' is part of a character, bytes that the next tokens complete)")
    return 0


def _as_shown(text) -> str:
    """text as stdout will print it: what its encoding lacks (Ġ in ASCII) as the escapes it becomes (\\u0120),
    so that the columns line up by what the user sees."""
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    return text.encode(encoding, "backslashreplace").decode(encoding)


def _download(model) -> int:
    from .auto import AutoModelForCausalLM
    from .hub import hub_settings

    if os.path.isdir(model):
        print(f"{model} is a local directory: nothing to download")
        return 0
    start = time.perf_counter()
    loaded = _repairing(model, AutoModelForCausalLM.from_pretrained)  # downloads and checks every tensor
    _repairing(model, _load_tokenizer)
    cache = hub_settings()["cache_dir"]
    print(f"{model}: {loaded.num_parameters() / 1e6:.1f}M parameters, ready in {cache} "
          f"({time.perf_counter() - start:.1f} s). It now works offline too (HF_HUB_OFFLINE=1).")
    return 0


def _repairing(model, load):
    """``load(model)``, fetching again each cached file that fails to load (huggingface_hub's force_download for
    that file): a cached file is never checked again by huggingface_hub, so a damaged one stays damaged."""
    from .hub import cached_file_named, resolve_file

    fetched = set()
    while True:
        try:
            return load(model)
        except (OSError, ValueError) as e:
            damaged = cached_file_named(str(e), model)
            if damaged is None or damaged[0] in fetched:  # (not a cached file, or damaged as downloaded)
                raise
            print(f"[the cached {damaged[0]} cannot be loaded, downloading it again: {' '.join(str(e).split())}]",
                  file=sys.stderr)
            resolve_file(model, damaged[0], force_download=True)
            fetched.add(damaged[0])


def _repair_hint(error, args) -> str:
    """For an error that names a file of the model in the HF cache: how to replace it (--download fetches it
    again; huggingface_hub never checks a cached file again)."""
    if args.download or args.info or args.doctor:
        return ""
    from .hub import cached_file_named, hub_settings

    damaged = cached_file_named(str(error), args.model)
    if damaged is None:
        return ""
    fetch = f"`python -m minigpt2 --download -m {args.model}`"
    if hub_settings()["offline"]:  # (--download cannot fetch anything while offline)
        fetch = f"{fetch} once HF_HUB_OFFLINE is unset"
    return (f". The copy in the Hugging Face cache looks damaged: fetch it again with {fetch}, or delete "
            f"{os.path.realpath(damaged[1])}")


def _info(dtype=None) -> int:
    from . import __version__, backend
    from .hub import hub_settings, someone_elses_token

    settings = hub_settings()
    print(f"minigpt2 {__version__} (Python {platform.python_version()}, NumPy {np.__version__}, "
          f"{platform.system()} {platform.machine()})")
    c_state = "available" if getattr(backend, "c_available", lambda: False)() else "not available"
    threads = getattr(backend, "get_num_threads", lambda: None)() if c_state == "available" else None  # (C's)
    # A bad MINIGPT2_BACKEND / _NUM_THREADS / _KERNEL: what runs is a stand-in until it is fixed (generating fails)
    problems = backend.setting_problems() if hasattr(backend, "setting_problems") else \
        dict(getattr(backend, "_environment_problems", {}))
    if kernel_without_c_core() is not None:  # (generating refuses it)
        problems["kernel"] = kernel_without_c_core()
    threads = ("threads: INVALID SETTING" if "threads" in problems else None if threads is None
               else _count(threads, "thread"))
    print(f"backend: {'INVALID SETTING' if 'backend' in problems else backend.get_backend()} (C core {c_state}"
          f"{'' if threads is None else f', {threads}'}); choose with --backend or MINIGPT2_BACKEND")
    for flag, problem in problems.items():
        if flag != "kernel":
            print(f"  error: {_without_python_hint(problem)}; --{flag} overrides it")
    if backend.c_available():
        ck = backend._ckernels
        names = ck._tuning.variant_names()
        print(f"C core: built with {ck.ffi.string(ck.lib.mg_build_info()).decode()}; variants {', '.join(names)}, "
              f"of which this CPU runs {', '.join(backend.kernel_variants())}; choose with MINIGPT2_KERNEL")
        blas = ", ".join(os.path.basename(p) for p in ck.blas_on_pool) or "no OpenBLAS that hands them over"
        print(f"NumPy's BLAS: its parallel jobs run on the C core's threads ({blas})" if ck.blas_on_pool else
              f"NumPy's BLAS: on its own threads ({blas}; docs/kernels.md, Threads)")
        if "kernel" in problems:  # (kernel_choice() would raise it)
            print(f"kernel choice: INVALID SETTING\n  error: {problems['kernel']}; unset MINIGPT2_KERNEL for auto")
        else:
            say_calibration_ahead()  # (the first --info on a machine measures the kernels: say so first)
            for line in backend.kernel_choice():
                print(line)
    elif "kernel" in problems:
        print(f"kernel choice: INVALID SETTING\n  error: {problems['kernel']}")
    print(f"weights: {dtype or 'float32'} ({'--dtype' if dtype else 'the default'}); choose with --dtype float32 | "
          f"bfloat16 | float16 (half the bytes) | int8 (about a quarter) | auto (as stored); activations stay float32")
    source = settings.get("token_source")  # (never the token itself)
    token = ("not set (HF_TOKEN, or the file HF_HOME/token that `hf auth login` writes)" if source is None else
             f"set (from {source})" if source in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN") else
             f"set (in the file {source})")
    if someone_elses_token(settings) is not None:  # (a room's shared HF_HOME: resolve_file does not send it)
        token = f"in the file {source}, {someone_elses_token(settings)[1]}'s (HF_HOME is shared): not sent"
    print(f"Hub: {settings['endpoint']} (HF_ENDPOINT); token {token}; offline {'yes' if settings['offline'] else 'no'} "
          f"(HF_HUB_OFFLINE)")
    print(f"cache: {settings['cache_dir']} (HF_HUB_CACHE, or HF_HOME/hub; HF_HOME is {settings['hf_home']})")
    cached = _cached_models(settings["cache_dir"])
    print(f"models in the cache: {', '.join(cached) if cached else 'none yet (python -m minigpt2 --download)'}")
    return 1 if problems else 0


def _cached_models(cache_dir) -> list:
    """Repositories in the HF cache with a model.safetensors (or a shard index) in some snapshot."""
    found = []
    try:
        entries = sorted(os.listdir(cache_dir))
    except OSError:
        return found
    for entry in entries:
        if not entry.startswith("models--"):
            continue
        snapshots = os.path.join(cache_dir, entry, "snapshots")
        try:
            complete = any(os.path.isfile(os.path.join(snapshots, s, name)) for s in os.listdir(snapshots)
                           for name in ("model.safetensors", "model.safetensors.index.json"))
        except OSError:
            complete = False
        if complete:
            found.append(entry[len("models--"):].replace("--", "/"))
    return found


if __name__ == "__main__":  # python -m minigpt2.cli: the same as python -m minigpt2
    from .__main__ import run

    sys.exit(run())
