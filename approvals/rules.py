"""Separation of duties as engine rules, checked under the instance lock.

Registered once with ``processes.hooks`` in ``ApprovalsConfig.ready``, so the
rules hold for every path that completes a task (API, UI, shell), not only
for ``approvals.services``. Rules (extension properties on the process or the
task; the task's value wins; "true"/"false"):

* ``baton:requesterMayNotApprove`` - the person who started the instance may
  not complete its tasks. Default ON for every user task that has candidates
  (a lane or candidate groups/users) unless those candidates include the
  ``Requesters`` group or the requester by name (e.g. "submit request").
* ``baton:distinctApprovers`` - nobody completes two different user tasks of
  one instance (chained or parallel steps). Default OFF. Repeating the *same*
  step in a loop (a re-review after changes) is not a second approval.
* ``baton:approveOnce`` - nobody approves twice in one instance: like
  ``distinctApprovers`` but the same step again in a loop counts too. Default
  OFF. Only approval steps count (tasks with candidates that do not include
  the ``Requesters`` group), so a requester may re-submit in a loop.

A stand-in (``approvals.people``) acting for someone is held to every rule
for themself *and* for the person they represent: ``task_decide`` sets the
represented person for the one ``task_complete`` call (``acting_as``).

A denial raises ``PermissionDenied(code="separation_of_duties")``. An
override (``approvals.services.task_decide(override_reason=...)`` by a user
with ``approvals.override_sod``) is recorded as a ``sod_override`` event on
the instance's chain, in the same transaction as the completion.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Iterator

from core.errors import PermissionDenied
from processes.audit import AuditEntry
from processes.hooks import Command
from processes.models import HumanTask, HumanTaskStatus
from processes.persistence import CommandRun

REQUESTER_RULE = "requesterMayNotApprove"
DISTINCT_RULE = "distinctApprovers"
ONCE_RULE = "approveOnce"
REQUESTER_GROUPS = {"requesters"}
_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


@dataclass
class Override:
    """An override requested for the current command (set by ``task_decide``)."""

    actor_id: int
    reason: str
    used: list[str] = field(default_factory=list)


_override: ContextVar[Override | None] = ContextVar("baton_sod_override", default=None)
_acting_for: ContextVar[Any | None] = ContextVar("baton_acting_for", default=None)


@contextmanager
def acting_as(represented: Any | None) -> Iterator[None]:
    """Inside the block the actor acts as the stand-in of ``represented`` (a user; ``None``: as themself)."""
    token = _acting_for.set(represented)
    try:
        yield
    finally:
        _acting_for.reset(token)


def acting_for_current() -> Any | None:
    """The person the current command's actor stands in for, if any."""
    return _acting_for.get()


@contextmanager
def override_active(actor: Any, reason: str) -> Iterator[Override | None]:
    """Allow the SoD rules to be overridden by ``actor`` with ``reason`` inside the block.

    A blank ``reason`` requests no override: the block runs as it would without this.
    """
    if not reason:
        yield _override.get()
        return
    token = _override.set(Override(actor_id=actor.pk, reason=reason))
    try:
        yield _override.get()
    finally:
        _override.reset(token)


def _flag(properties: dict, name: str) -> bool | None:
    for key, value in (properties or {}).items():
        if key.split(":")[-1].lower() == name.lower():
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
    return None


def rule_enabled(command: Command, name: str, default: bool) -> bool:
    """Read a rule flag from the task's element, then the process, else ``default``."""
    definition = command.instance.definition
    elements = definition.elements or {}
    task_props = (elements.get(command.human_task.element_id) or {}).get("properties") or {}
    process_props = (elements.get(definition.process_key) or {}).get("properties") or {}
    for props in (task_props, process_props):
        value = _flag(props, name)
        if value is not None:
            return value
    return default


def _requester_default(task: HumanTask, requester: Any) -> bool:
    groups = {g.lower() for g in task.candidate_groups or []}
    users = set(task.candidate_users or [])
    if not groups and not users:
        return False  # a task nobody is named for is not an approval step
    return not (groups & REQUESTER_GROUPS or requester.get_username() in users)


def _is_approval_step(groups: list, users: list, requester_name: str | None) -> bool:
    if not groups and not users:
        return False
    return not ({g.lower() for g in groups or []} & REQUESTER_GROUPS or (requester_name and requester_name in users))


def violations(command: Command) -> list[tuple[str, str]]:
    """Return (rule, explanation) for every rule the command breaks (for the actor and whom they stand in for)."""
    task, actor, instance = command.human_task, command.actor, command.instance
    represented = _acting_for.get()
    people = [actor] + ([represented] if represented is not None and represented.pk != actor.pk else [])
    ids = [p.pk for p in people]
    found: list[tuple[str, str]] = []
    step = task.name or task.element_id
    if instance.started_by_id is not None and instance.started_by_id in ids:
        requester = next(p for p in people if p.pk == instance.started_by_id)
        if rule_enabled(command, REQUESTER_RULE, _requester_default(task, requester)):
            who = "You" if requester.pk == actor.pk else f"{requester.get_username()}, whom you stand in for,"
            found.append((REQUESTER_RULE, f"{who} started this {instance.definition.name or 'process'}, so you may "
                          f"not complete '{step}': the requester may not approve their own "
                          "request (rule baton:requesterMayNotApprove)."))
    if rule_enabled(command, DISTINCT_RULE, False):
        other = (HumanTask.objects.filter(instance=instance, status=HumanTaskStatus.COMPLETED, completed_by_id__in=ids)
                 .exclude(element_id=task.element_id).values_list("name", "element_id").first())
        if other is not None:
            found.append((DISTINCT_RULE, f"{_who(people)} already completed '{other[0] or other[1]}' in this "
                          f"instance, so you may not also complete '{step}': each step needs a different "
                          "approver (rule baton:distinctApprovers)."))
    if rule_enabled(command, ONCE_RULE, False):
        requester_name = instance.started_by.get_username() if instance.started_by_id else None
        if _is_approval_step(task.candidate_groups, task.candidate_users, requester_name):
            done = HumanTask.objects.filter(instance=instance, status=HumanTaskStatus.COMPLETED,
                                            completed_by_id__in=ids).values_list(
                "name", "element_id", "candidate_groups", "candidate_users")
            other = next((row for row in done if _is_approval_step(row[2], row[3], requester_name)), None)
            if other is not None:
                found.append((ONCE_RULE, f"{_who(people)} already approved '{other[0] or other[1]}' in this "
                              f"instance, so you may not approve '{step}' too: nobody approves twice in one "
                              "instance (rule baton:approveOnce)."))
    return found


def _who(people: list) -> str:
    if len(people) == 1:
        return "You"
    return f"You or {people[1].get_username()} (whom you stand in for)"


def separation_of_duties(command: Command) -> None:
    """Engine check: refuse a task completion that breaks a separation-of-duties rule."""
    if (command.kind not in ("task_complete", "task_vote") or command.human_task is None
            or not getattr(command.actor, "pk", None)):
        return
    found = violations(command)
    if not found:
        return
    override = _override.get()
    if override is not None and override.actor_id == command.actor.pk and override.reason.strip():
        override.used = [rule for rule, _ in found]
        task = command.human_task
        CommandRun.status_only(command.instance, command.actor, AuditEntry(
            "sod_override", task_id=task.task_id, element_id=task.element_id,
            payload={"rules": override.used, "reason": override.reason,
                     "explanations": [text for _, text in found]}), command.instance.status)
        return
    raise PermissionDenied(
        " ".join(text for _, text in found),
        code="separation_of_duties",
        details={"rules": [rule for rule, _ in found], "task": command.human_task.pk,
                 "override": "a user with the permission approvals.override_sod may override, with a reason"},
    )
