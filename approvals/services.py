"""What a person does to a task: claim, release, delegate, reassign, decide.

Each command locks the instance row (the same lock order as the engine's
commands: instance first), runs the engine's registered checks, changes the
``HumanTask`` row and appends one audit event to the instance's chain, all
in one transaction. Deciding goes through ``processes.services.task_complete``
so the separation-of-duties rules (``approvals.rules``) run under that lock.
Visibility comes first: a task the actor may not see answers ``NotFound``.
A stand-in (``approvals.people``) may act on the tasks of the person they
stand in for; each such command records ``acting_for`` in its audit payload.
"""
from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from core.errors import Conflict, PermissionDenied, ValidationError
from processes import hooks
from processes import services as engine
from processes.audit import AuditEntry
from processes.models import HumanTask, HumanTaskStatus, ProcessInstance
from processes.persistence import CommandRun

from . import rules
from .forms import form_validate
from .models import Delegation
from .notifications import assignment_notify
from .people import manager_of
from .selectors import acting_for, is_candidate, roles_of, task_get_for

log = logging.getLogger("baton.approvals")
OVERRIDE_PERMISSION = "approvals.override_sod"


def _locked(human_task_id: int, actor: Any) -> tuple[ProcessInstance, HumanTask]:
    """Check visibility, lock the task's instance, re-read the task and require it open."""
    task = task_get_for(user=actor, human_task_id=human_task_id)
    instance = engine._lock_instance(task.instance_id)
    task = HumanTask.objects.select_related("assignee").get(pk=task.pk)
    task.instance = instance
    if task.status != HumanTaskStatus.OPEN:
        raise Conflict(f"task {human_task_id} is already {task.status}", code="task_not_open")
    engine._require_active(instance)
    return instance, task


def _is_operator(actor: Any) -> bool:
    return bool(roles_of(actor) & {"operator", "admin"})


def _record(instance: ProcessInstance, actor: Any, task: HumanTask, command: str, payload: dict,
            represented: Any = None) -> None:
    if represented is not None:
        payload = {**payload, "acting_for": represented.get_username()}
    CommandRun.status_only(instance, actor, AuditEntry(command, task_id=task.task_id, element_id=task.element_id,
                                                       payload=payload), instance.status)


def task_claim(*, human_task_id: int, actor: Any) -> HumanTask:
    """Take an open task of one's groups: it becomes one's own until released or delegated.

    A stand-in may also take a task of the person they stand in for (assigned
    to them, or unassigned with them as a candidate).
    """
    with engine._busy_as_conflict(), transaction.atomic():
        instance, task = _locked(human_task_id, actor)
        if task.assignee_id == actor.pk:
            return task
        represented = acting_for(actor, task)
        if task.assignee_id is not None and (represented is None or represented.pk != task.assignee_id):
            raise Conflict(f"task {human_task_id} is already claimed by {task.assignee.get_username()}",
                           code="task_claimed")
        if represented is None and not is_candidate(actor, task):
            raise PermissionDenied("you are not a candidate for this task", code="not_a_candidate")
        hooks.run_checks(hooks.Command("task_claim", instance, actor, task))
        previous = task.assignee
        task.assignee = actor
        task.save(update_fields=["assignee"])
        payload = {"assignee": actor.get_username()}
        if previous is not None:
            payload["previous_assignee"] = previous.get_username()
        _record(instance, actor, task, "task_claim", payload, represented)
    return task


def task_release(*, human_task_id: int, actor: Any) -> HumanTask:
    """Give a claimed task back to its candidates (its assignee, their stand-in, or an operator)."""
    with engine._busy_as_conflict(), transaction.atomic():
        instance, task = _locked(human_task_id, actor)
        if task.assignee_id is None:
            raise Conflict(f"task {human_task_id} is not claimed", code="task_not_claimed")
        represented = acting_for(actor, task) if task.assignee_id != actor.pk else None
        if task.assignee_id != actor.pk and represented is None and not _is_operator(actor):
            raise PermissionDenied("only the assignee or an operator may release this task", code="not_assignee")
        hooks.run_checks(hooks.Command("task_release", instance, actor, task))
        previous = task.assignee.get_username()
        task.assignee = None
        task.save(update_fields=["assignee"])
        _record(instance, actor, task, "task_release", {"previous_assignee": previous}, represented)
    return task


def _require_active_user(user: Any) -> None:
    if user is None or not getattr(user, "pk", None) or not user.is_active:
        raise ValidationError("choose an active user", details=[{"field": "to_user",
                                                                  "message": "Choose an active user."}])


def task_delegate(*, human_task_id: int, actor: Any, to_user: Any, reason: str = "") -> HumanTask:
    """Hand a task to another person (by its assignee, a candidate of an unclaimed task, a stand-in of either,
    or an operator)."""
    _require_active_user(to_user)
    with engine._busy_as_conflict(), transaction.atomic():
        instance, task = _locked(human_task_id, actor)
        own = task.assignee_id == actor.pk or (task.assignee_id is None and is_candidate(actor, task))
        represented = acting_for(actor, task) if not own else None
        if not (own or represented is not None or _is_operator(actor)):
            raise PermissionDenied("only the assignee or an operator may delegate this task", code="not_assignee")
        if task.assignee_id == to_user.pk:
            raise Conflict(f"task {human_task_id} is already assigned to {to_user.get_username()}",
                           code="already_assigned")
        hooks.run_checks(hooks.Command("task_delegate", instance, actor, task, {"to_user": to_user.pk}))
        previous = task.assignee
        Delegation.objects.create(task=task, from_user=previous, to_user=to_user, by_user=actor, reason=reason)
        task.assignee = to_user
        task.save(update_fields=["assignee"])
        _record(instance, actor, task, "task_delegate", {
            "from": previous.get_username() if previous else None, "to": to_user.get_username(), "reason": reason},
            represented)
        assignment_notify(task=task, to_user=to_user, by=actor, verb="delegated", reason=reason)
    return task


def task_reassign(*, human_task_id: int, actor: Any, to_user: Any, reason: str) -> HumanTask:
    """Move a task to another person, with a reason: by operators/admins or the directory manager of its assignee.

    Unlike ``task_delegate`` (the holder hands over their own work), this is
    a decision over someone else's work: it needs a reason and is recorded as
    ``Delegation(kind="reassign")`` and a ``task_reassign`` event.
    """
    _require_active_user(to_user)
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError("give a reason for the reassignment",
                              details=[{"field": "reason", "message": "This field is required."}])
    with engine._busy_as_conflict(), transaction.atomic():
        instance, task = _locked(human_task_id, actor)
        manages = task.assignee_id is not None and getattr(manager_of(task.assignee), "pk", None) == actor.pk
        if not (manages or _is_operator(actor)):
            raise PermissionDenied("only an operator or the assignee's manager may reassign this task",
                                   code="not_permitted")
        if task.assignee_id == to_user.pk:
            raise Conflict(f"task {human_task_id} is already assigned to {to_user.get_username()}",
                           code="already_assigned")
        hooks.run_checks(hooks.Command("task_reassign", instance, actor, task, {"to_user": to_user.pk}))
        previous = task.assignee
        Delegation.objects.create(task=task, from_user=previous, to_user=to_user, by_user=actor, reason=reason,
                                  kind="reassign")
        task.assignee = to_user
        task.save(update_fields=["assignee"])
        _record(instance, actor, task, "task_reassign", {
            "from": previous.get_username() if previous else None, "to": to_user.get_username(), "reason": reason})
        assignment_notify(task=task, to_user=to_user, by=actor, verb="reassigned", reason=reason)
    return task


DEACTIVATED_REASON = "user deactivated"


def tasks_release_of_deactivated(*, user: Any) -> list[HumanTask]:
    """Give every open task assigned to a deactivated user back to its candidates.

    One transaction per instance, under its lock; each task gets a
    ``Delegation(kind="deactivated")`` (to nobody) and a ``task_release`` event
    with the reason "user deactivated". Runs from the ``User`` post-save signal
    (``approvals.people``); returns the released tasks.
    """
    released: list[HumanTask] = []
    instance_ids = sorted(set(HumanTask.objects.filter(assignee=user, status=HumanTaskStatus.OPEN)
                              .values_list("instance_id", flat=True)))
    for instance_id in instance_ids:
        with engine._busy_as_conflict(), transaction.atomic():
            instance = engine._lock_instance(instance_id)
            for task in HumanTask.objects.filter(instance=instance, assignee=user, status=HumanTaskStatus.OPEN):
                Delegation.objects.create(task=task, from_user=user, to_user=None, by_user=None,
                                          reason=DEACTIVATED_REASON, kind="deactivated")
                task.assignee = None
                task.save(update_fields=["assignee"])
                _record(instance, None, task, "task_release", {"previous_assignee": user.get_username(),
                                                               "reason": DEACTIVATED_REASON})
                released.append(task)
    if released:
        log.info("released %d task(s) of deactivated user %s", len(released), user.get_username())
    return released


def _prepared(task: HumanTask, data: dict | None, decision: str) -> tuple[dict, str]:
    if data is not None and not isinstance(data, dict):
        raise ValidationError("task data must be a JSON object")
    data = dict(data or {})
    fields = ((task.form_schema or {}).get("properties") or {}) if isinstance(task.form_schema, dict) else {}
    if decision and "decision" in fields and "decision" not in data:
        data["decision"] = decision
    if not decision and isinstance(data.get("decision"), str):
        decision = data["decision"]
    form_validate(task.form_schema, data)
    return data, decision


def _record_denial(task: HumanTask, actor: Any, exc: PermissionDenied) -> None:
    """Audit a separation-of-duties denial on the instance's chain, after the refused command rolled back."""
    try:
        with engine._busy_as_conflict(), transaction.atomic():
            instance = engine._lock_instance(task.instance_id)
            _record(instance, actor, task, "sod_denied", {"message": exc.message, **(exc.details or {})})
    except Exception:  # noqa: BLE001 - never hide the denial itself behind an audit failure
        log.exception("could not audit the separation-of-duties denial on task %s", task.pk)


def task_decide(
    *,
    human_task_id: int,
    actor: Any,
    data: dict | None = None,
    decision: str = "",
    reason: str = "",
    override_reason: str = "",
) -> HumanTask:
    """Complete a task as a person: check rights, validate the form, then let the engine advance.

    The actor must be the assignee or, for an unclaimed task, a candidate (the
    task is then claimed for them in the same transaction), or the stand-in of
    either (the task is then theirs; rules hold for both people and the
    ``task_complete`` event carries ``acting_for``). ``data`` is
    validated against the task's JSON Schema (field-level errors). A
    ``decision`` is copied into the form's ``decision`` field when the form has
    one and it was not sent (and read from it when only the form carries it).
    ``override_reason`` overrides a separation-of-duties rule; it needs the
    ``approvals.override_sod`` permission and is audited with the reason.
    """
    task = task_get_for(user=actor, human_task_id=human_task_id)
    from . import voting  # Q: an N-of-M task takes this person's vote instead (approvals/voting.py)

    if voting.is_vote_task(task):
        return voting.vote_cast(human_task_id=human_task_id, actor=actor, outcome=decision, reason=reason,
                                data=data, override_reason=override_reason).task
    override_reason = (override_reason or "").strip()
    if override_reason and not actor.has_perm(OVERRIDE_PERMISSION):
        raise PermissionDenied("you may not override separation of duties", code="override_not_permitted")
    data, decision = _prepared(task, data, decision)
    try:
        with engine._busy_as_conflict(), transaction.atomic():
            instance, task = _locked(human_task_id, actor)
            represented = acting_for(actor, task) if task.assignee_id != actor.pk else None
            if task.assignee_id is not None and task.assignee_id != actor.pk and (
                    represented is None or represented.pk != task.assignee_id):
                raise Conflict(f"task {human_task_id} is claimed by {task.assignee.get_username()}",
                               code="task_claimed")
            if task.assignee_id != actor.pk:
                if represented is None and not is_candidate(actor, task):
                    raise PermissionDenied("you are not a candidate for this task", code="not_a_candidate")
                task.assignee = actor
                task.save(update_fields=["assignee"])
            with rules.acting_as(represented), rules.override_active(actor, override_reason):
                return engine.task_complete(human_task_id=task.pk, actor=actor, data=data, decision=decision,
                                            reason=reason)
    except PermissionDenied as exc:
        if exc.code == "separation_of_duties":
            _record_denial(task, actor, exc)
        raise

