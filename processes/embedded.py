"""The in-process worker of the embedded default: jobs and timers with no broker.

One daemon thread sweeps every ``BATON_SWEEP_SECONDS`` (or at once when
nudged): recovers expired leases, runs due jobs inline. Started by
``manage.py serve`` (what ``make run`` uses); production runs Celery workers
and one beat instead (docs/operations.md).
"""
from __future__ import annotations

import logging
import threading

from django.conf import settings
from django.db import close_old_connections

log = logging.getLogger("baton.embedded")
_wakeup = threading.Event()
_thread: threading.Thread | None = None
_stop = threading.Event()


def wake() -> None:
    _wakeup.set()


def sweep_once() -> dict[str, int]:
    """Run one sweep in this thread: recover leases, run every due job."""
    from .jobs import job_execute
    from .sweeper import sweep

    report = sweep(nudge_due=False)
    ran = 0
    for job_id in report.due_job_ids:
        if job_execute(job_id=job_id) != "skipped":
            ran += 1
    return {"recovered": len(report.recovered_job_ids), "ran": ran, "timers": report.timers_fired}


def _loop() -> None:
    interval = float(getattr(settings, "BATON_SWEEP_SECONDS", 2))
    while not _stop.is_set():
        _wakeup.wait(interval)
        _wakeup.clear()
        try:
            close_old_connections()
            sweep_once()
        except Exception:  # noqa: BLE001 - keep the worker alive; the next sweep retries
            log.exception("embedded worker sweep failed")
        finally:
            close_old_connections()


def start() -> threading.Thread:
    """Start the embedded worker thread once per process."""
    global _thread
    if _thread is None or not _thread.is_alive():
        _stop.clear()
        _thread = threading.Thread(target=_loop, name="baton-embedded-worker", daemon=True)
        _thread.start()
    return _thread


def stop() -> None:
    _stop.set()
    _wakeup.set()
