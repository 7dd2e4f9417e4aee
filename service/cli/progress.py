"""The progress bar every long command shows: count, rate and time remaining.

On a terminal it is a live rich bar; when output goes to a file or pipe it prints one plain status
line every `log_every_s` seconds instead, so logs of long runs still show rate and ETA.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class _RateColumn(ProgressColumn):
    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(
            f"{speed:,.1f} {self.unit}/s" if speed else f"- {self.unit}/s", style="progress.data.speed"
        )


class LoggingProgress(Progress):
    """A rich Progress that also logs plain lines when the console is not a terminal."""

    def __init__(self, *columns: ProgressColumn, unit: str, log_every_s: float = 30.0, **kwargs: Any) -> None:
        super().__init__(*columns, **kwargs)
        self.unit = unit
        self.log_every_s = log_every_s
        self._last_log = time.monotonic()

    def update(self, task_id: TaskID, **kwargs: Any) -> None:
        super().update(task_id, **kwargs)
        if self.console.is_terminal or time.monotonic() - self._last_log < self.log_every_s:
            return
        self._last_log = time.monotonic()
        task = self._tasks[task_id]
        speed = task.speed or 0.0
        total = f"/{task.total:.0f}" if task.total else ""
        eta = f" eta {task.time_remaining:.0f}s" if task.time_remaining is not None else ""
        status = task.fields.get("status", "")
        line = f"{task.description} {task.completed:.0f}{total} {speed:,.1f} {self.unit}/s{eta} {status}"
        self.console.print(line.rstrip(), highlight=False)


def progress_bar(unit: str = "it", *, stderr: bool = False) -> LoggingProgress:
    """A progress display with description, bar, done/total, rate in `unit`/s, elapsed and ETA; on
    stderr when stdout carries the command's answer (JSON)."""
    return LoggingProgress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(unit),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        unit=unit,
        console=Console(stderr=True) if stderr else None,
    )
