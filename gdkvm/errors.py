"""The one domain exception of gdkvm.

Library code raises :class:`GdkvmError` (or a subclass) with a one-line message that names the file or
object and the problem. The CLI turns it into a red one-line message and exit code 1; ``--debug`` shows
the traceback instead.
"""

from __future__ import annotations

from pathlib import Path


class GdkvmError(Exception):
    """A user-facing error: bad input, missing file, unknown name, failed check."""


class DataError(GdkvmError):
    """A dataset file is missing, corrupt or inconsistent."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path is not None else problem)


class ConfigError(GdkvmError):
    """An unknown name, an invalid option value or a malformed config file."""


def unknown_name(kind: str, name: str, valid: list[str] | tuple[str, ...]) -> ConfigError:
    """Build the standard error for an unknown registered name, listing the valid ones."""
    return ConfigError(f"unknown {kind} '{name}'; valid: {', '.join(sorted(valid))}")
