"""``python -m minigpt2 "prompt"`` (and the ``minigpt2`` command): see minigpt2/cli.py."""
import os
import signal
import sys

from .cli import main


def run():
    if getattr(signal.getsignal(signal.SIGINT), "__name__", "") == "interrupted_while_starting":
        signal.signal(signal.SIGINT, signal.default_int_handler)  # (set while minigpt2 was imported: _starting.py)
    code = main()
    if code == 130:
        # Ctrl-C: leave at once. huggingface_hub 1.x/2.x download in worker threads that Python would otherwise
        # wait for at exit, for as long as a stalled connection lasts; what they leave is an .incomplete file,
        # which nothing loads and the next download replaces.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    return code


if __name__ == "__main__":
    sys.exit(run())
