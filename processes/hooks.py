"""The one hook through which other apps check a command before it applies.

``approvals`` registers its rules (separation of duties, candidate checks)
here. Checks run *after* the instance row is locked and before the command
touches the workflow, so a rule such as "nobody approves two parallel steps"
cannot race. A check refuses by raising a ``core.errors.BatonError``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
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
