"""The one hook through which other apps check a command before it applies.

``approvals`` registers its rules (separation of duties, candidate checks)
here. Checks run *after* the instance row is locked and before the command
touches the workflow, so a rule such as "nobody approves two parallel steps"
cannot race. A check refuses by raising a ``core.errors.BatonError``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import logging
from datetime import datetime
from typing import Any, Callable

from .models import HumanTask, ProcessInstance


@dataclass(frozen=True)
class Command:
    """A command about to be applied to a locked instance."""

    kind: str  # "start", "task_complete", "cancel", "suspend", "resume", ...
    instance: ProcessInstance
    actor: Any
    human_task: HumanTask | None = None
    data: dict = field(default_factory=dict)
    decision: str = ""


Check = Callable[[Command], None]
_CHECKS: list[Check] = []


def register_check(check: Check) -> Check:
    """Register ``check`` for every command (idempotent; usable as a decorator)."""
    if check not in _CHECKS:
        _CHECKS.append(check)
    return check


def unregister_check(check: Check) -> None:
    if check in _CHECKS:
        _CHECKS.remove(check)


def run_checks(command: Command) -> None:
    """Run every registered check; the first refusal propagates."""
    for check in tuple(_CHECKS):
        check(command)


# Listeners: other apps react to what a command did, inside its transaction and under
# the instance lock (so what they write commits or rolls back with the command).
# ``tasks_opening`` sees the new ``HumanTask`` rows before they are inserted and may
# fill in candidates, assignee, due date or priority; ``command_finished`` sees the
# run (its ``created_tasks``, ``completed_task_ids``, ``instance``) and the audit
# entries about to be written, and may append to them.
Listener = Callable[[Any, list], None]
_TASKS_OPENING: list[Listener] = []
_COMMAND_FINISHED: list[Listener] = []


def on_tasks_opening(listener: Listener) -> Listener:
    """Register ``listener(run, tasks)`` for new human tasks before they are saved (idempotent)."""
    if listener not in _TASKS_OPENING:
        _TASKS_OPENING.append(listener)
    return listener


def on_command_finished(listener: Listener) -> Listener:
    """Register ``listener(run, entries)`` for every command that loaded the workflow (idempotent)."""
    if listener not in _COMMAND_FINISHED:
        _COMMAND_FINISHED.append(listener)
    return listener


def tasks_opening(run: Any, tasks: list[HumanTask]) -> None:
    for listener in tuple(_TASKS_OPENING):
        listener(run, tasks)


def command_finished(run: Any, entries: list) -> None:
    for listener in tuple(_COMMAND_FINISHED):
        listener(run, entries)


# Sweep listeners: other apps add periodic work to the sweeper (approvals sends due-date
# reminders). Each runs once per sweep, outside any instance lock; a failing listener
# is logged and never stops the sweep or the other listeners.
SweepListener = Callable[[datetime], Any]
_SWEEP: list[SweepListener] = []
log = logging.getLogger("baton.hooks")


def on_sweep(listener: SweepListener) -> SweepListener:
    """Register ``listener(now)`` to run at every sweep (idempotent; usable as a decorator)."""
    if listener not in _SWEEP:
        _SWEEP.append(listener)
    return listener


def swept(now: datetime) -> int:
    """Run every sweep listener; return how many ran without raising."""
    ok = 0
    for listener in tuple(_SWEEP):
        try:
            listener(now)
            ok += 1
        except Exception:  # noqa: BLE001 - isolate listeners from the sweep
            log.exception("sweep listener %s failed", getattr(listener, "__qualname__", listener))
    return ok
