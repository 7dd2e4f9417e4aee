"""The `latentdex` console script's entry point.

Decode workers are started by multiprocessing, which re-imports the parent's main script in each worker.
The script imports only this module, so workers do not load torch, FAISS and SQLAlchemy with the command
line (about 250 MiB each); the command line itself is imported when the command runs.
"""

from __future__ import annotations


def main() -> None:
    """Run the `latentdex` command line."""
    from latentdex.service.cli import main as run_command_line

    run_command_line()
