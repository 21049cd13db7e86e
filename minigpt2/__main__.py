"""``python -m minigpt2 "prompt"`` (and the ``minigpt2`` command): see minigpt2/cli.py."""
import os
import signal
import sys
import time

if getattr(sys.modules[__package__], "__file__", None) is None:  # a folder named minigpt2 where Python looks first
    hiding = ", ".join(getattr(sys.modules[__package__], "__path__", []))  # (the clone of the repository, say)
    sys.exit(f"python -m minigpt2: error: the folder {hiding} is named minigpt2 and hides the installed package "
             f"from Python; run the command from another directory (cd ..), or rename that folder")

from .cli import main  # noqa: E402 (after the check above: this import is what fails)

_first_ctrl_c = []  # when the first Ctrl-C came (time.monotonic())


def interrupted(signum, frame):
    """Ctrl-C: a KeyboardInterrupt, which ends the run (the text so far, "[interrupted]", exit code 130). Pressed
    again while that ending runs, as an impatient user does, it is ignored: a KeyboardInterrupt inside the ending
    printed a traceback and left with -2 instead. Pressed again more than a second later, the ending is stuck (say,
    writing to a pipe that nobody reads): leave at once."""
    if not _first_ctrl_c:
        _first_ctrl_c.append(time.monotonic())
        raise KeyboardInterrupt
    if time.monotonic() - _first_ctrl_c[0] > 1:
        os._exit(130)


def run(prog: str = "python -m minigpt2"):
    handler = signal.getsignal(signal.SIGINT)  # (not when SIGINT is ignored, as for a job started with "&")
    if handler is signal.default_int_handler or getattr(handler, "__name__", "") == "interrupted_while_starting":
        signal.signal(signal.SIGINT, interrupted)  # (interrupted_while_starting: set while importing, _starting.py)
    code = main(prog=prog)  # (prog: how the user started it, for the usage and error lines)
    if code == 130:
        # Ctrl-C: leave at once. huggingface_hub 1.x/2.x download in worker threads that Python would otherwise
        # wait for at exit, for as long as a stalled connection lasts; what they leave is an .incomplete file,
        # which nothing loads and the next download replaces.
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (AttributeError, OSError, ValueError):  # closed (>&-), or a reader that went away (| head)
                pass
        os._exit(130)
    return code


def command():
    """The ``minigpt2`` command (setup.py's console script): ``run``, naming itself as the user typed it."""
    return run(prog="minigpt2")


if __name__ == "__main__":
    sys.exit(run())
