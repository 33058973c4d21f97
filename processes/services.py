"""Commands on process instances: one function, one transaction, one lock each.

Every command follows the same path (see docs/architecture.md):
lock the instance row -> run the registered checks -> load the workflow ->
apply the command and run engine steps until every branch waits -> save the
state, sync HumanTask / Job / Activity rows, append audit events -> commit.
A command fails with ``Conflict`` only when it no longer makes sense; a lock
held longer than the lock timeout gives ``Busy`` (409, retry later).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from django.db import OperationalError, transaction
from django.utils import timezone

from bpmn.models import ProcessDefinition
from core.errors import Busy, Conflict, NotFound, ValidationError

from . import hooks
from .audit import AuditEntry
from .engine import runtime
from .engine.serializer import SERIALIZER_VERSION, new_workflow, state_loads
from .models import HumanTask, HumanTaskStatus, InstanceStatus, ProcessInstance
from .persistence import CommandRun
from .selectors import definition_specs

ACTIVE_STATUSES = (InstanceStatus.RUNNING, InstanceStatus.WAITING, InstanceStatus.INCIDENT)


def _is_lock_error(exc: OperationalError) -> bool:
    sqlstate = getattr(getattr(exc, "__cause__", None), "sqlstate", None)
    return sqlstate == "55P03" or "database is locked" in str(exc) or "lock timeout" in str(exc)


@contextmanager
def _busy_as_conflict() -> Iterator[None]:
    """Turn a lock wait past the lock timeout into a clean, retryable conflict."""
    try:
        yield
    except OperationalError as exc:
        if _is_lock_error(exc):
            raise Busy("the instance is busy with another command; retry shortly") from exc
        raise


def _lock_instance(instance_id: int) -> ProcessInstance:
    try:
        return (
            ProcessInstance.objects.select_related("definition")
            .select_for_update(of=("self",))
            .get(pk=instance_id)
        )
    except ProcessInstance.DoesNotExist:
        raise NotFound(f"process instance {instance_id} does not exist") from None


def _load(instance: ProcessInstance):
    return state_loads(instance.state, definition_id=instance.definition_id, specs=definition_specs(instance.definition))


def _require_active(instance: ProcessInstance) -> None:
    if instance.status not in ACTIVE_STATUSES:
        raise Conflict(f"instance {instance.pk} is {instance.status}", code="instance_not_active")


def instance_start(
    *,
    process_key: str,
    actor: Any = None,
    version: int | None = None,
    business_key: str = "",
    data: dict[str, Any] | None = None,
) -> ProcessInstance:
    """Start an instance of the latest (or given) version and run it to its first waits."""
    if data is not None and not isinstance(data, dict):
        raise ValidationError("initial data must be a JSON object")
    definitions = ProcessDefinition.objects.filter(process_key=process_key)
    if version is not None:
        definitions = definitions.filter(version=version)
    definition = definitions.order_by("-version").first()
    if definition is None:
        suffix = f" version {version}" if version is not None else ""
        raise NotFound(f"no process definition '{process_key}'{suffix}")
    specs = definition_specs(definition)
    with _busy_as_conflict(), transaction.atomic():
        instance = ProcessInstance(
            definition=definition,
            business_key=business_key,
            started_by=actor if getattr(actor, "pk", None) else None,
            state=b"",
            serializer_version=SERIALIZER_VERSION,
        )
        hooks.run_checks(hooks.Command("start", instance, actor, data=dict(data or {})))
        instance.save(force_insert=True)
        run = CommandRun.begin(instance, new_workflow(specs), actor=actor)
        run.seed_data(dict(data or {}))
        failure = runtime.advance(run.workflow)
        run.finish(
            [AuditEntry("instance_start", payload={"business_key": business_key, "data": dict(data or {})})],
            failure=failure,
        )
    return instance


def task_complete(
    *,
    human_task_id: int,
    actor: Any,
    data: dict[str, Any] | None = None,
    decision: str = "",
    reason: str = "",
) -> HumanTask:
    """Complete a person's task with form data (and an optional decision), then advance.

    The decision is also stored under ``decisions[<element id>]`` so parallel
    branches never overwrite each other's decision at a join (SpiffWorkflow's
    merge is last-writer-wins on plain keys).
    """
    if data is not None and not isinstance(data, dict):
        raise ValidationError("task data must be a JSON object")
    data = dict(data or {})
    with _busy_as_conflict(), transaction.atomic():
        try:
            human_task = (
                HumanTask.objects.select_related("instance__definition")
                .select_for_update(of=("instance",))
                .get(pk=human_task_id)
            )
        except HumanTask.DoesNotExist:
            raise NotFound(f"task {human_task_id} does not exist") from None
        instance = human_task.instance
        if human_task.status != HumanTaskStatus.OPEN:
            raise Conflict(f"task {human_task_id} is already {human_task.status}", code="task_not_open")
        _require_active(instance)
        hooks.run_checks(hooks.Command("task_complete", instance, actor, human_task, data, decision))
        run = CommandRun.begin(instance, _load(instance), actor=actor)
        if decision:
            decisions = dict(runtime.find_task(run.workflow, human_task.task_id).data.get("decisions") or {})
            decisions[human_task.element_id] = {
                "outcome": decision,
                "by": getattr(actor, "username", "") or "",
                "reason": reason,
            }
            data["decisions"] = decisions
        runtime.complete_human_task(run.workflow, human_task.task_id, data)
        failure = runtime.advance(run.workflow)
        now = run.now
        human_task.status = HumanTaskStatus.COMPLETED
        human_task.completed_by = actor if getattr(actor, "pk", None) else None
        human_task.completed_at = now
        human_task.decision = decision
        human_task.submitted = data
        human_task.save(update_fields=["status", "completed_by", "completed_at", "decision", "submitted"])
        run.completed_task_ids.add(human_task.task_id)
        payload = {"data": data, "decision": decision, "reason": reason}
        run.finish(
            [AuditEntry("task_complete", task_id=human_task.task_id, element_id=human_task.element_id, payload=payload)],
            failure=failure,
        )
    return human_task


def _transition(*, instance_id: int, actor: Any, command: str, allowed: tuple[str, ...], apply) -> ProcessInstance:
    with _busy_as_conflict(), transaction.atomic():
        instance = _lock_instance(instance_id)
        if instance.status not in allowed:
            raise Conflict(f"cannot {command} instance {instance_id}: it is {instance.status}", code="bad_transition")
        hooks.run_checks(hooks.Command(command, instance, actor))
        apply(instance)
    return instance


def instance_cancel(*, instance_id: int, actor: Any, reason: str = "") -> ProcessInstance:
    """Cancel an unfinished instance: its open tasks and queued jobs are cancelled too."""

    def apply(instance: ProcessInstance) -> None:
        run = CommandRun.begin(instance, _load(instance), actor=actor)
        runtime.cancel(run.workflow)
        run.finish([AuditEntry("instance_cancel", payload={"reason": reason})], status=InstanceStatus.CANCELLED)

    return _transition(
        instance_id=instance_id, actor=actor, command="cancel",
        allowed=(*ACTIVE_STATUSES, InstanceStatus.SUSPENDED), apply=apply,
    )


def instance_suspend(*, instance_id: int, actor: Any, reason: str = "") -> ProcessInstance:
    """Suspend an instance: nothing advances it until it is resumed."""

    def apply(instance: ProcessInstance) -> None:
        CommandRun.status_only(instance, actor, AuditEntry("instance_suspend", payload={"reason": reason}),
                               InstanceStatus.SUSPENDED)

    return _transition(instance_id=instance_id, actor=actor, command="suspend", allowed=ACTIVE_STATUSES, apply=apply)


def instance_resume(*, instance_id: int, actor: Any) -> ProcessInstance:
    """Resume a suspended instance into waiting (or incident, if one is still open)."""

    def apply(instance: ProcessInstance) -> None:
        status = InstanceStatus.INCIDENT if instance.incidents.filter(status="open").exists() else InstanceStatus.WAITING
        CommandRun.status_only(instance, actor, AuditEntry("instance_resume"), status)

    return _transition(
        instance_id=instance_id, actor=actor, command="resume", allowed=(InstanceStatus.SUSPENDED,), apply=apply
    )


def incident_retry(*, incident_id: int, actor: Any, data: dict[str, Any] | None = None) -> ProcessInstance:
    """Re-run the failed step of an open incident, optionally after editing its data."""
    from .models import Incident, IncidentStatus

    incident = Incident.objects.filter(pk=incident_id).only("instance_id").first()
    if incident is None:
        raise NotFound(f"incident {incident_id} does not exist")
    with _busy_as_conflict(), transaction.atomic():
        instance = _lock_instance(incident.instance_id)
        incident = Incident.objects.get(pk=incident_id)
        if incident.status != IncidentStatus.OPEN or incident.task_id is None:
            raise Conflict(f"incident {incident_id} is not open", code="incident_not_open")
        if instance.status != InstanceStatus.INCIDENT:
            raise Conflict(f"instance {instance.pk} is {instance.status}", code="instance_not_in_incident")
        hooks.run_checks(hooks.Command("incident_retry", instance, actor, data=dict(data or {})))
        run = CommandRun.begin(instance, _load(instance), actor=actor)
        runtime.retry_failed_task(run.workflow, incident.task_id, data)
        failure = runtime.advance(run.workflow)
        incident.status = IncidentStatus.RESOLVED
        incident.resolved_at = run.now
        incident.save(update_fields=["status", "resolved_at"])
        run.finish(
            [AuditEntry("incident_retry", task_id=incident.task_id, element_id=incident.element_id,
                        payload={"incident": incident.pk, "data": dict(data or {})})],
            failure=failure, resolved_incident=True,
        )
    return instance
