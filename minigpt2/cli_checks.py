"""Checks of the command line (minigpt2/cli.py) that need more than argparse: flags a command would ignore, the
token ids config.json gives, what a number of beams costs in memory, and whether the kernels are about to be
measured. Each raises cli.UsageError (exit 2) or ValueError (exit 1) with one line that names what to change.
"""
from __future__ import annotations

import argparse
import errno
import itertools
import os
import re
import sys
import textwrap

__all__ = ["TEMPERATURE_RANGE", "refuse_ignored_flags", "eos_token_ids", "start_token_id", "check_beams_fit",
           "check_candidates", "calibration_ahead", "say_calibration_ahead", "one_line_warning", "ArgumentParser",
           "HelpFormatter", "NamedStdout", "StdoutWriteError", "BROKEN_PIPE", "stopped_writing",
           "kernel_without_c_core", "negative_values_attached", "not_enough_memory", "say_threads_do_nothing",
           "escaped"]

# A temperature divides float32 scores. Below 1e-4 a logit difference of 0.01 becomes a factor e^100: sampling is
# greedy decoding already (use --greedy), and the scores of GPT-2 (about +-100) reach float32's limit, 3.4e38, near
# T = 3e-37; above 1e4, GPT-2's scores all fall within +-0.01 of each other: every token allowed by top-k / top-p
# is equally likely, and near 3.4e38 T itself no longer fits in a float32.
TEMPERATURE_RANGE = (1e-4, 1e4)
# What a calibration of the kernels takes (minigpt2/_tuning.py, once per machine): on a 2-core Xeon VM 7.0 s with 2
# threads and 9.3-9.5 s with 1, idle, 11 s while other jobs ran (2026-12-05, since its races drop the candidates that
# cannot win after a first round; 14-15 s, and up to 31 s busy, before); on Zen 5 about 4 s before that.
CALIBRATION_SECONDS = "up to about 10 s"


# -- writing to stdout -------------------------------------------------------------------------------------

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # control characters, but tab and newline


def escaped(text: str) -> str:
    """``text`` with its control characters (tab and newline aside) as escapes, ``\x1b``, ``\r``: what a terminal
    shows instead of obeying them (ESC recolours, moves the cursor, retitles the window; \r overwrites the line)."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text) if _CONTROL.search(text) else text


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, except that ``--help`` into a stdout that cannot take it (``> /dev/full``, a full disk)
    raises the OSError: argparse ignores a failed write there and exits 0, as if the help had been printed; and a
    usage error shows the control characters of what was typed (an unknown flag, a value) as escapes."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {escaped(message)}\n")

    def print_help(self, file=None):
        file = sys.stdout if file is None else file
        if file is None:  # started with stdout closed (>&-)
            raise StdoutWriteError(errno.EBADF, "cannot write to stdout: it is closed (redirect it to a file, or to "
                                                "/dev/null to discard what is printed)")
        file.write(self.format_help())
        file.flush()


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """argparse's help, with the description and the epilog fitted to the terminal's width too (argparse fills only
    the options' help; RawDescriptionHelpFormatter prints the rest as written, lines of up to 118 characters that an
    80-column terminal broke mid-word). Paragraphs are separated by blank lines: one that fits is printed as written;
    prose that does not is filled again; an indented example ("  command  what it does") keeps its command whole,
    to be copied, and gets its note on the next line."""

    def _fill_text(self, text, width, indent):
        lines = []
        for paragraph in text.split("\n\n"):
            rows = paragraph.splitlines()
            if all(len(row) <= width for row in rows):  # (width: what is left after the indent)
                lines += rows
            else:  # (runs of prose rows are filled together; each example row on its own)
                for indented, run in itertools.groupby(rows, key=lambda row: row[:1].isspace()):
                    lines += [fitted for row in run for fitted in _example_fitted(row, width)] if indented else \
                        textwrap.wrap(" ".join(run), width, break_long_words=False, break_on_hyphens=False)
            lines.append("")
        return "\n".join(indent + line if line else line for line in lines[:-1])


def _example_fitted(row, width) -> list:
    """An example line, "  command   what it does", as it fits: the note under the command if not beside it."""
    example = re.match(r"(\s+\S.*?)\s{2,}(\S.*)", row)
    if len(row) <= width or example is None:
        return [row]
    command, note = example.groups()
    return [command] + textwrap.wrap(note, width, initial_indent=" " * 6, subsequent_indent=" " * 6,
                                     break_long_words=False, break_on_hyphens=False)


class StdoutWriteError(OSError):
    """Writing to stdout failed (not a reader that went away: that is a BrokenPipeError). Said as its message alone,
    without OSError's "[Errno 28]" before it."""

    def __str__(self):
        return self.strerror


class NamedStdout:
    """sys.stdout while a command runs: the same stream, but a write or flush that fails (``> /dev/full``, a full
    disk) raises a StdoutWriteError that says it was stdout, since "[Errno 28] No space left on device" alone reads
    like the model cache's. Everything else is the stream's own."""

    def __init__(self, stream):
        self.stream, self.ends_line = stream, True  # ends_line: nothing written yet, or a newline last

    def write(self, text):
        written = self._named(self.stream.write, text)
        if text:
            self.ends_line = text.endswith("\n")
        return written

    def flush(self):
        return self._named(self.stream.flush)

    def _named(self, call, *args):
        try:
            return call(*args)
        except BrokenPipeError:
            raise
        except OSError as e:
            raise StdoutWriteError(e.errno, f"cannot write to stdout: {e.strerror or e}") from None

    def __getattr__(self, name):
        return getattr(self.stream, name)


BROKEN_PIPE = 128 + 13  # 128 + SIGPIPE: what a shell reports for a writer whose reader went away


def stopped_writing(error, prog) -> int:
    """The exit code when writing to stdout failed (``error``, an OSError): a reader that went away (e.g. "| head")
    stops the command quietly, with the status of a program SIGPIPE ended (as cat, yes and grep do); a stdout that
    cannot take the text (a full disk, > /dev/full) is an error naming stdout (as cat's "write error")."""
    if isinstance(error, BrokenPipeError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (the text still pending goes nowhere)
        return BROKEN_PIPE
    if not isinstance(error, StdoutWriteError):  # (--help, written before a command runs)
        error = StdoutWriteError(error.errno, f"cannot write to stdout: {error.strerror or error}")
    print(f"{prog}: error: {error}", file=sys.stderr)
    return 1


# -- reading the command line ----------------------------------------------------------------------------------

def negative_values_attached(parser, argv) -> list:
    """``-t -1e-3``, ``-n -inf``: argparse takes a value that starts with "-" for a flag unless it reads like "-5" or
    "-.5", and then says only "expected one argument". A number there is the flag's value (``--temperature=-1e-3``),
    so that the flag's own check names it and what is allowed."""
    takes_value = {s: a.option_strings[-1] for a in parser._actions if a.option_strings and a.nargs is None
                   for s in a.option_strings}
    out, i = [], 0
    while i < len(argv):
        word = argv[i]
        if word == "--":  # the rest is the prompt
            return out + argv[i:]
        value = argv[i + 1] if i + 1 < len(argv) else ""
        if word in takes_value and value[:1] == "-" and value not in parser._option_string_actions \
                and _reads_as_a_number(value):
            out.append(f"{takes_value[word]}={value}")
            i += 2
        else:
            out.append(word)
            i += 1
    return out


def _reads_as_a_number(text) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def not_enough_memory(error, fix) -> str:
    """The one line for a MemoryError (NumPy's names the array it could not allocate), with what takes less."""
    return f"not enough memory: {' '.join(str(error).split()) or 'MemoryError'}; {fix}"


# -- flags a command would ignore ------------------------------------------------------------------------

GENERATION_FLAGS = (("max_new_tokens", "--max-new-tokens"), ("temperature", "--temperature"), ("top_k", "--top-k"),
                    ("top_p", "--top-p"), ("greedy", "--greedy"), ("beams", "--beams"), ("seed", "--seed"),
                    ("num_sequences", "--num-sequences"), ("candidates", "--candidates"), ("stats", "--stats"))
# What each command uses besides its own argument: the others would do nothing, silently.
USES = {"--tokenize": {"model"}, "--download": {"model"}, "--info": {"dtype", "backend", "threads"},
        "--doctor": {"backend", "threads"}, "--version": set()}
OTHER_FLAGS = (("model", "--model"), ("dtype", "--dtype"), ("backend", "--backend"), ("threads", "--threads"))


def refuse_ignored_flags(command, args, parser, usage_error):
    """A command given flags it would ignore (--tokenize -n 5, --info --greedy, --download --beams 3): exit 2,
    naming them. A flag set to its default value (-n 50) changes nothing and passes."""
    given = [flag for dest, flag in GENERATION_FLAGS + OTHER_FLAGS
             if dest not in USES[command] and getattr(args, dest) != parser.get_default(dest)]
    if given:
        them = "it" if len(given) == 1 else "them"
        raise usage_error(f"{command} does not use {', '.join(given)}: drop {them} (flags that would silently do "
                          f"nothing are refused)")


# -- token ids from config.json -----------------------------------------------------------------------------

def _config_file(model_name) -> str:
    """Where the model's config.json is, for a message: the file of a local directory, else the Hub's name."""
    if os.path.isdir(model_name):
        return os.path.join(model_name, "config.json")
    return f"config.json of {model_name!r}"


def _is_id(value, vocab_size) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < vocab_size


def eos_token_ids(config, model_name):
    """config.eos_token_id as a list of ids ([] for None). transformers allows one id or a list (generation stops at
    any of them, and pads with the first): anything else, or an id outside the vocabulary (the padding of a finished
    sequence), is an error naming the key and the file."""
    value = config.eos_token_id
    ids = [] if value is None else value if isinstance(value, list) else [value]
    if not all(_is_id(i, config.vocab_size) for i in ids) or (isinstance(value, list) and not ids):
        raise ValueError(f"{_config_file(model_name)}: eos_token_id must be a token id from 0 to "
                         f"{config.vocab_size - 1} (GPT-2's is 50256, <|endoftext|>), a non-empty list of them, or "
                         f"null; got {value!r}")
    return ids


def start_token_id(config, model_name) -> int:
    """The id an empty prompt starts from: config.bos_token_id, checked (GPT-2's is 50256, <|endoftext|>)."""
    value = config.bos_token_id
    if not _is_id(value, config.vocab_size):
        raise ValueError(f"{_config_file(model_name)}: bos_token_id is {value!r}, but an empty prompt starts from it, "
                         f"so it must be a token id from 0 to {config.vocab_size - 1} (GPT-2's is 50256, "
                         f"<|endoftext|>); fix it there, or give a prompt")
    return value


# -- what the flags cost ------------------------------------------------------------------------------------

# Beam search keeps, per beam, a few float32 copies of the step's scores over the vocabulary (the logits, their
# log-softmax, the running totals, the top-2k selection's work): 10 copies match what a 2000-beam run on a tiny model
# used (3.7 GB, tests by a new user); the prompt's first pass makes the logits of every prompt position; and the
# key/value cache, 2 tensors per layer, copied when beams are reordered.
SCORE_COPIES = 10


def _available_memory():
    """Bytes of memory available to a new allocation (Linux's MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _size(n_bytes) -> str:
    return f"{n_bytes / 1e9:.1f} GB" if n_bytes >= 1e9 else f"{n_bytes / 1e6:.0f} MB"


def check_beams_fit(beams, config, prompt_tokens, new_tokens, usage_error, available=None):
    """--beams N whose scores and key/value caches would not fit in the memory available: exit 2 with the estimate
    and the most beams that fit (a typo such as --beams 1000 would otherwise freeze the machine)."""
    available = _available_memory() if available is None else available
    if available is None:
        return
    length = prompt_tokens + new_tokens
    per_beam = (4 * config.vocab_size * (SCORE_COPIES + prompt_tokens)
                + 2 * 2 * config.n_layer * length * config.n_embd * 4)
    if beams * per_beam <= available:
        return
    raise usage_error(f"--beams {beams} would need about {_size(beams * per_beam)} of memory for its scores and "
                      f"key/value caches ({_size(per_beam)} per beam), more than the {_size(available)} available; "
                      f"use at most --beams {max(1, available // per_beam)}")


def check_candidates(k, config, usage_error):
    if k > config.vocab_size:
        raise usage_error(f"--candidates {k} is more than the {config.vocab_size} tokens this model has; "
                          f"use at most --candidates {config.vocab_size} (a handful is what one reads)")


def say_threads_do_nothing(threads) -> None:
    """--threads N where the C core is not built: it sets the C kernels' threads (and NumPy's BLAS's through them), so
    it changes nothing; one line on stderr says so, and what does set NumPy's threads."""
    from . import backend

    if not backend.c_available():
        print(f"[--threads {threads} changes nothing here: it sets the threads of the C core, which is not built; "
              f"NumPy's BLAS takes OPENBLAS_NUM_THREADS, set before Python starts]", file=sys.stderr)


# -- the first run's kernel measuring -----------------------------------------------------------------------

def kernel_without_c_core():
    """The ValueError for a MINIGPT2_KERNEL that chooses a variant of the C core where it is not built (the command
    refuses it: it would choose nothing), or None. With the C core, backend.setting_problems() checks the name."""
    from . import backend

    kernel = os.environ.get("MINIGPT2_KERNEL", "").strip()
    if kernel in ("", "auto", "numpy") or backend.c_available():
        return None
    return ValueError(f"MINIGPT2_KERNEL={kernel!r} chooses a variant of the C core, which is not built here (only auto "
                      f"and numpy can be used); unset MINIGPT2_KERNEL (or set it to auto or numpy)")


def calibration_ahead():
    """(cache file, why it cannot be saved or None) if the next C kernel call will measure the kernels, else None."""
    from . import _tuning, backend

    if backend.get_backend() != "c" or not backend.c_available():
        return None
    return _tuning.measuring_ahead()


def say_calibration_ahead() -> None:
    """One line on stderr before the kernels are measured (when the choice can be cached: otherwise _tuning says
    so itself, with the fix, before measuring)."""
    ahead = calibration_ahead()
    if ahead is not None and ahead[1] is None:
        print(f"[measuring this CPU's kernels once ({CALIBRATION_SECONDS}); the choice is cached in "
              f"{os.path.dirname(ahead[0])}]", file=sys.stderr, flush=True)


# -- warnings -------------------------------------------------------------------------------------------------

def one_line_warning(message, category, filename, lineno, line=None) -> str:
    """Every warning as minigpt2 writes its own: "minigpt2: ...", one line, without Python's file, line number and
    source line (under python -m they are runpy's or minigpt2's internals, nothing the user can act on)."""
    text = " ".join(str(message).split())
    if not text.startswith("minigpt2:"):
        kind = "" if category in (UserWarning, RuntimeWarning) else f"{category.__name__}: "
        text = f"minigpt2: {kind}{text}"
    return text + "\n"
