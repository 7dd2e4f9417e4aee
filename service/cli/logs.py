"""Log set-up for long-running commands: text for people, or one JSON object per line for machines."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class JsonFormatter(logging.Formatter):
    """Each record as one JSON object: time, level, logger, message (a JSON message is embedded as is)."""

    def __init__(self, process_ids: bool = False) -> None:
        super().__init__()
        self.process_ids = process_ids

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        if self.process_ids:
            line["pid"] = record.process
        try:
            parsed = json.loads(message) if message.startswith("{") else None
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            line.update(parsed)
        else:
            line["message"] = message
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, separators=(",", ":"), default=str)


def configure_logging(log_format: str = "text", level: int = logging.INFO, process_ids: bool = False) -> None:
    """Send INFO and above to stderr, as "text" or "json" lines; `process_ids`: each line names its
    process (where several processes share one stderr)."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter(process_ids))
    else:
        process = " [%(process)d]" if process_ids else ""
        handler.setFormatter(logging.Formatter(f"%(asctime)s{process} %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
