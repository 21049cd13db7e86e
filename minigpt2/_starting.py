"""Ctrl-C while ``python -m minigpt2`` (or the ``minigpt2`` command) is still importing the package.

The imports (NumPy, the C core, huggingface_hub) are the slow part of a start; a Ctrl-C there would print a
traceback from deep inside one. While the command is starting, it exits 130 with one line instead, as it does
later; the command line (minigpt2/__main__.py) puts Python's own handler back as soon as it runs. A program
that merely imports minigpt2 keeps Python's handler.
"""
import os
import signal
import sys


def starting_the_command() -> bool:
    """Whether Python is importing minigpt2 to run ``python -m minigpt2`` (sys.argv[0] is "-m" while -m looks for
    its module) or the ``minigpt2`` command."""
    argv0, orig = (sys.argv or [""])[0], getattr(sys, "orig_argv", None)
    if argv0 == "-m":
        return orig is None or ["-m", "minigpt2"] in [orig[i:i + 2] for i in range(len(orig))]
    return os.path.basename(argv0) in ("minigpt2", "minigpt2.exe")


def interrupted_while_starting(signum, frame):  # see quiet_ctrl_c_while_starting
    if not starting_the_command():  # (another program, started with -m, that imported minigpt2: Python's own)
        signal.default_int_handler(signum, frame)
    sys.stderr.write("\n[interrupted]\n")
    sys.stderr.flush()
    os._exit(130)


def quiet_ctrl_c_while_starting():
    """Started as ``python -m minigpt2`` (or the ``minigpt2`` command): Ctrl-C during the imports below exits 130
    with one line, as it does later, not with a traceback from deep inside an import. The command line
    (minigpt2/__main__.py) puts Python's own Ctrl-C back as soon as it runs."""
    if starting_the_command() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # (not ignored)
        try:
            signal.signal(signal.SIGINT, interrupted_while_starting)
        except ValueError:  # not the main thread
            pass
