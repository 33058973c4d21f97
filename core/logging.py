"""Structured logs: one JSON object per line, with Baton's ids when a record carries them.

Enable with ``LOG_FORMAT=json``. Call sites pass ids through ``extra``
(``instance_id``, ``task_id``, ``job_id``, ``element_id``, ``command``), so a log
pipeline can follow one instance across web, workers and beat.
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

CONTEXT_FIELDS = ("instance_id", "task_id", "job_id", "element_id", "command", "attempt", "status")


class JsonFormatter(logging.Formatter):
    """Format a record as a single JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = str(value) if not isinstance(value, (int, float, bool)) else value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)
