"""The one base class of every error a user can cause and fix; the CLI catches this class only.

Anything else that escapes is a programming error and keeps its traceback.
"""

from __future__ import annotations


class MedbenchError(Exception):
    """A request medbench refuses; the message says what is wrong and what to do."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with what was kept: the CLI prints the message in one line (exit status 130), never a traceback."""
