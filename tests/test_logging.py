"""Structured logs carry instance, task and job ids as JSON fields."""
import json
import logging
import uuid

from core.logging import JsonFormatter


def test_json_formatter_emits_one_object_with_context_ids():
    record = logging.LogRecord("baton.jobs", logging.INFO, __file__, 1, "job %s ran", (7,), None)
    record.instance_id, record.task_id, record.job_id = 42, uuid.UUID(int=1), 7
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert entry["message"] == "job 7 ran" and entry["level"] == "INFO" and entry["logger"] == "baton.jobs"
    assert entry["instance_id"] == 42 and entry["job_id"] == 7
    assert entry["task_id"] == "00000000-0000-0000-0000-000000000001"
    assert "\n" not in line


def test_json_formatter_includes_exceptions():
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    assert "ValueError: boom" in json.loads(JsonFormatter().format(record))["exception"]
