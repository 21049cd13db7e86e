"""Opening a file of the HF cache while another process may be linking it again.

The HF cache keeps each downloaded file once, in ``blobs/``, and names it in ``snapshots/<commit>/<filename>`` by
a symbolic link. huggingface_hub makes that link by removing it first and then linking anew, and a process that
downloads the same file at the same moment as this one (three workshop notebooks started together) does so
*after* this process was handed the path: for a moment, a file that was just found is missing. (huggingface_hub
0.23 does it for every process that waited for the download; later releases in a narrower window.)

``open_file`` is ``open`` for the files minigpt2 reads from a checkpoint: a file missing from a ``snapshots``
folder is looked for again a few times over about a second before the FileNotFoundError goes to the caller.
Anywhere else, a missing file is missing at once.
"""
from __future__ import annotations

import os
import time

__all__ = ["open_file"]

_WAITS = (0.005, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4)  # seconds: 1.075 in all, more than relinking takes a loaded machine


def open_file(path, mode="r", **kwargs):
    """``open(path, mode, **kwargs)``, waiting out a link of the HF cache that another process is making again."""
    for wait in (*_WAITS, None):
        try:
            return open(path, mode, **kwargs)
        except FileNotFoundError:
            if wait is None or not in_a_snapshot(path):
                raise
            time.sleep(wait)


def in_a_snapshot(path) -> bool:
    """Whether ``path`` is a file of a snapshot of the HF cache: ``.../models--<owner>--<name>/snapshots/<commit>/
    <filename>``, where ``<filename>`` may have folders (a checkpoint's subfolder)."""
    parts = os.path.abspath(os.fspath(path)).split(os.sep)
    return any(part == "snapshots" and parts[i - 1].startswith(("models--", "datasets--", "spaces--"))
               for i, part in enumerate(parts[1:-2], start=1))
