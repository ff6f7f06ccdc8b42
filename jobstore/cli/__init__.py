"""The ``jobstore`` command line: inspect and steer a store from the shell.

Kept apart from the library so that workers importing ``jobstore`` never load click or rich.
"""

from __future__ import annotations

from ._commands import cli, main

__all__ = ["cli", "main"]
