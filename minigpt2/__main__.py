"""``python -m minigpt2 "prompt"`` (and the ``minigpt2`` command): see minigpt2/cli.py."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
