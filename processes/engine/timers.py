"""Timer waits inside a workflow, and timer start events of a process spec.

SpiffWorkflow computes a timer's due time the first time the waiting task is
evaluated (``has_fired``) and keeps it in the task's internal data under
``event_value``: an ISO date-time string for date and duration timers, a
``{"cycles", "next", "duration"}`` dict for cycle timers. Every
``do_engine_steps`` ends with ``refresh_timers``, so after ``runtime.advance``
every waiting timer has its due time; this module only reads it.

Time zone: the server runs in UTC (``TIME_ZONE = "UTC"``). A timer date
written without an offset (``2030-01-01T09:00:00``) is read by the library in
the server's local zone, i.e. as UTC; write an offset (``Z``, ``+02:00``) to
mean another zone. Due times returned here are always aware UTC datetimes.

Cost: one pass over the waiting catch events (the library's event manager,
the very list ``refresh_timers`` walks), not over the task tree.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

from SpiffWorkflow.bpmn.specs.event_definitions.multiple import MultipleEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.timer import (
    CycleTimerEventDefinition,
    DurationTimerEventDefinition,
    TimeDateEventDefinition,
    TimerEventDefinition,
)
from SpiffWorkflow.bpmn.specs.mixins.events.start_event import StartEvent
from SpiffWorkflow.util.task import TaskState

from bpmn import sandbox

from .serializer import BatonWorkflow

log = logging.getLogger("baton.timers")

# Schedule kinds (the values of processes.models.Schedule.Kind).
DATE, DURATION, CYCLE = "date", "duration", "cycle"
_KINDS = ((CycleTimerEventDefinition, CYCLE), (DurationTimerEventDefinition, DURATION),
          (TimeDateEventDefinition, DATE))


def _timer_definition(spec: Any) -> TimerEventDefinition | None:
    """Return the timer of a catch event spec (also inside a multiple event), else None."""
    definition = getattr(spec, "event_definition", None)
    if isinstance(definition, TimerEventDefinition):
        return definition
    if isinstance(definition, MultipleEventDefinition):
        return next((d for d in definition.event_definitions if isinstance(d, TimerEventDefinition)), None)
    return None


def _waiting_timers(workflow: BatonWorkflow) -> Iterator[tuple[Any, TimerEventDefinition]]:
    """Yield ``(task, timer definition)`` for every WAITING timer, subprocesses included."""
    for task in list(workflow.event_manager.tasks.values()):
        definition = _timer_definition(task.task_spec)
        if definition is not None and task.has_state(TaskState.WAITING):
            yield task, definition


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        value = TimerEventDefinition.get_datetime(value.isoformat())  # the library's reading: server zone
    return value.astimezone(timezone.utc)


def _due(task: Any, definition: TimerEventDefinition) -> datetime | None:
    """Return when ``task``'s timer fires next, as the library will decide it; None if never."""
    value = task._get_internal_data("event_value")
    if value is None:
        return None
    try:
        if isinstance(definition, CycleTimerEventDefinition):
            if not isinstance(value, dict) or value.get("cycles") == 0:
                return None  # every occurrence has fired; the task completes on the next refresh
            return _utc(datetime.fromisoformat(value["next"]))
        if isinstance(definition, DurationTimerEventDefinition):
            return _utc(TimerEventDefinition.get_datetime(value))
        parsed = TimerEventDefinition.parse_time_or_duration(value)
        return _utc(parsed) if isinstance(parsed, datetime) else None
    except Exception:  # noqa: BLE001 - a value the library cannot read never breaks a command
        log.warning("timer %s has an unreadable due time %r", task.task_spec.bpmn_id, value)
        return None


def next_due(workflow: BatonWorkflow) -> datetime | None:
    """Return when the earliest waiting timer of ``workflow`` is due (aware UTC), or None.

    Covers intermediate timer catch events, interrupting and non-interrupting
    boundary timers, timers inside subprocesses and the next occurrence of a
    cycle. Never raises: it runs at the end of every command.
    """
    dues = [due for task, definition in _waiting_timers(workflow) if (due := _due(task, definition))]
    return min(dues) if dues else None


def _snapshot(task: Any) -> tuple[int, str, bool]:
    return task.state, repr(task._get_internal_data("event_value")), bool(task._get_internal_data("event_fired"))


def fire_due(workflow: BatonWorkflow, now: datetime) -> list[str]:
    """Let every timer due at ``now`` fire; return the element ids that fired.

    Calls the library's ``refresh_timers`` (which reads the real clock, so
    ``now`` should be the current time); the caller then runs
    ``runtime.advance`` so the paths behind the fired timers run. A cycle
    that missed several occurrences fires them all (the library catches up)
    and is reported once.
    """
    due = [(task, _snapshot(task)) for task, definition in _waiting_timers(workflow)
           if (when := _due(task, definition)) is not None and when <= now]
    if not due:
        return []
    workflow.refresh_timers()
    return [task.task_spec.bpmn_id or task.task_spec.name for task, before in due if _snapshot(task) != before]


# --- timer start events (Baton's schedules) ----------------------------------------------


@dataclass(frozen=True)
class StartTimer:
    """A timer start event of a process: what a ``Schedule`` row is made from."""

    element_id: str
    kind: str  # DATE, DURATION or CYCLE
    expression: str  # as written in the diagram (a sandboxed expression)


def start_timers(spec: Any) -> list[StartTimer]:
    """Return the timer start events of a process spec (not of its event subprocesses)."""
    found = []
    for task_spec in spec.task_specs.values():
        definition = getattr(task_spec, "event_definition", None)
        if not isinstance(task_spec, StartEvent) or not isinstance(definition, TimerEventDefinition):
            continue
        kind = next(k for cls, k in _KINDS if isinstance(definition, cls))
        found.append(StartTimer(task_spec.bpmn_id or task_spec.name, kind, definition.expression))
    return sorted(found, key=lambda t: t.element_id)


def start_timer_value(expression: str) -> str:
    """Evaluate a start timer's expression (sandboxed, with no instance data) to its ISO text."""
    value = sandbox.evaluate(expression, {})
    if not isinstance(value, str):
        raise ValueError(f"the timer expression gave {type(value).__name__}, not ISO-8601 text")
    return value.strip()


def _duration(text: str, start: datetime) -> timedelta:
    return TimerEventDefinition.get_timedelta_from_start(TimerEventDefinition.parse_iso_duration(text), start)


def _cycle(text: str, now: datetime) -> tuple[int, datetime, timedelta]:
    """Parse ``R[n]/[start/]duration`` like the library, but relative to ``now``."""
    parts = text.upper().replace("--", "/").strip("R").split("/")
    if len(parts) == 2 and parts[1].startswith("P"):
        cycles = int(parts[0]) if parts[0] else -1
        interval = _duration(parts[1], now)
        return cycles, now + interval, interval
    cycles, start, interval = TimerEventDefinition.parse_iso_recurring_interval(text)
    return cycles, _utc(start), interval


def schedule_first_run(kind: str, value: str, *, now: datetime) -> tuple[datetime, int | None]:
    """Return ``(next_run_at, remaining)`` for a schedule published at ``now``.

    date: once at the date (naive dates in the server zone, UTC); duration:
    once, that long after publication; cycle ``R<n>/<duration>``: first after
    one interval, ``n`` runs (``R/…``: unbounded, remaining None); a cycle
    with a start date begins at that date.
    """
    if kind == CYCLE:
        cycles, start, _ = _cycle(value, now)
        return start, (None if cycles < 0 else cycles)
    if kind == DURATION:
        return now + _duration(value, now), None
    parsed = TimerEventDefinition.parse_time_or_duration(value)
    return (_utc(parsed) if isinstance(parsed, datetime) else now + _duration(value, now)), None


def schedule_after_run(value: str, *, due: datetime, remaining: int | None,
                       now: datetime) -> tuple[datetime | None, int | None]:
    """Return a cycle's ``(next_run_at, remaining)`` after the run that was due at ``due``.

    Occurrences missed while no sweeper ran are coalesced into the one run
    that just happened (no burst of identical instances after an outage) and
    count as used, so a bounded cycle still ends when its timeline ends.
    ``next_run_at`` is None when no run is left.
    """
    _, _, interval = _cycle(value, due)
    if interval <= timedelta(0):
        return None, 0
    used = 1 + max((now - due) // interval, 0)  # this run plus the occurrences missed since
    following = due + used * interval
    if remaining is not None:
        remaining = max(remaining - used, 0)
        if remaining == 0:
            return None, 0
    return following, remaining


def fire_start_event(workflow: BatonWorkflow, element_id: str) -> bool:
    """Fire a waiting timer start event now (an instance a schedule started); False if none waits.

    SpiffWorkflow keeps the timer start event inside the instance, so a new
    instance would wait on the very timer that started it (and a cycle would
    run its path once per occurrence inside one instance). This moves the
    timer's due time into the past - for a cycle, one last occurrence - and
    lets the library's own timer code fire it; the caller then advances.
    """
    past = (datetime.now(timezone.utc) - timedelta(seconds=1)).isoformat()
    for task, definition in _waiting_timers(workflow):
        spec = task.task_spec
        if task.workflow is not workflow or not isinstance(spec, StartEvent) or spec.bpmn_id != element_id:
            continue
        if isinstance(definition, CycleTimerEventDefinition):
            interval = (task._get_internal_data("event_value") or {}).get("duration", 0)
            task._set_internal_data(event_value={"cycles": 1, "next": past, "duration": interval})
        else:
            task._set_internal_data(event_value=past)
        for _ in range(3):  # a cycle needs three updates: occurrence, last cycle used, fired
            spec._update(task)
            if not task.has_state(TaskState.WAITING):
                break
        return True
    return False
