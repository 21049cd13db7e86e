"""The command line, as a careful user found it (round 15): the --tokenize table where stdout cannot encode the
vocabulary's characters (a C locale's ASCII, PYTHONIOENCODING=ascii).

A subprocess each, as the user runs it; GPT-2's bundled vocabulary, no network.
"""
import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("encoding", ["ascii", "utf-8"])
def test_the_tokenize_table_lines_up_whatever_stdout_can_encode(encoding):
    """Ġ (a space) and the other byte characters print as escapes (\\u0120) on an ASCII stdout, several columns
    each; the token column's width is that of what is printed, so every row's text starts under "text"."""
    env = dict(os.environ, PYTHONIOENCODING=encoding, HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, "-m", "minigpt2", "--tokenize", "Hello wörld 日本 é"], env=env,
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode(encoding).splitlines()
    header, rows = lines[0], lines[1:-1]
    assert len(rows) == 10 and rows[1].split()[2] == ("\\u0120w" if encoding == "ascii" else "\u0120w"), lines
    column = header.index("text")
    for row in rows:
        assert row[column - 2:column] == "  " and row[column] in "'b", (header, row)
