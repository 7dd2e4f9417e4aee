"""The CLI's exit code for an error: its kind's `exit_code` (the table is in `latentdex.errors`)."""

from __future__ import annotations

from latentdex.errors import INTERRUPTED, VERIFY_FAILED, LatentdexError

__all__ = ["INTERRUPTED", "VERIFY_FAILED", "exit_code_for"]


def exit_code_for(error: LatentdexError) -> int:
    """The process exit code for `error` (1 for domain errors without a specific code)."""
    return error.exit_code
