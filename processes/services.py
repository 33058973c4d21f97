"""Commands on process instances: one function, one transaction, one lock each.

Every command follows the same path (see docs/architecture.md):
lock the instance row -> run the registered checks -> load the workflow ->
apply the command and run engine steps until every branch waits -> save the
state, sync HumanTask / Job / Activity rows, append audit events -> commit.
A command fails with ``Conflict`` only when it no longer makes sense; a lock
held longer than the lock timeout gives ``Busy`` (409, retry later).
"""
from __future__ import annotations

import hashlib
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Iterator

from django.db import OperationalError, transaction
from django.utils import timezone

from bpmn.models import ProcessDefinition
from core.errors import Busy, Conflict, NotFound, ValidationError

from . import hooks
from .audit import AuditEntry, canonical_json
from .engine import runtime
from .engine.serializer import SERIALIZER_VERSION, new_workflow, state_loads
from .models import HumanTask, HumanTaskStatus, InstanceStatus, ProcessInstance
from .nudge import nudge_on_commit
from .persistence import CommandRun, jsonable
from .selectors import definition_specs

ACTIVE_STATUSES = (InstanceStatus.RUNNING, InstanceStatus.WAITING, InstanceStatus.INCIDENT)
SEEN_MAX_BYTES = 64 * 1024  # task data kept whole in the audit's "seen"; above, only its hash
BUSINESS_KEY_MAX = 255  # ProcessInstance.business_key


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
    if len(business_key or "") > BUSINESS_KEY_MAX:
        raise ValidationError(f"the business key is longer than {BUSINESS_KEY_MAX} characters", details=[
            {"field": "business_key", "message": f"At most {BUSINESS_KEY_MAX} characters."}])
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


def _seen(shown: dict[str, Any]) -> dict[str, Any]:
    """What the task showed its person: its data before completion, or that data's hash and size when large."""
    plain = jsonable(shown)
    text = canonical_json(plain)
    if len(text) <= SEEN_MAX_BYTES:
        return {"data": plain}
    return {"sha256": hashlib.sha256(text.encode()).hexdigest(), "bytes": len(text)}


def task_complete(
    *,
    human_task_id: int,
    actor: Any,
    data: dict[str, Any] | None = None,
    decision: str = "",
    reason: str = "",
    details: dict[str, Any] | None = None,
) -> HumanTask:
    """Complete a person's task with form data (and an optional decision), then advance.

    The decision is also stored under ``decisions[<element id>]`` so parallel
    branches never overwrite each other's decision at a join (SpiffWorkflow's
    merge is last-writer-wins on plain keys). ``details`` adds fields to that
    record (e.g. ``approvals.voting`` puts the vote tally there). The audit
    event keeps what was submitted and, under ``seen``, the data the task
    presented (``_seen``).
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
        shown = runtime.find_task(run.workflow, human_task.task_id).data
        seen = _seen(shown)
        if decision:
            decisions = dict(shown.get("decisions") or {})
            decisions[human_task.element_id] = {
                "outcome": decision,
                "by": getattr(actor, "username", "") or "",
                "reason": reason,
                **(details or {}),
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
        payload = {"data": data, "decision": decision, "reason": reason, "seen": seen}
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


@contextmanager
def _incident_command(incident_id: int, actor: Any, command: str, data: dict[str, Any]) -> Iterator[tuple]:
    """Lock an open incident's instance and load it; resolve the incident and write it all on exit.

    Yields ``(incident, run, outcome)``: the caller applies its step and may put
    a ``StepFailure`` in ``outcome["failure"]``.
    """
    from .models import Incident, IncidentStatus

    instance_id = Incident.objects.filter(pk=incident_id).values_list("instance_id", flat=True).first()
    if instance_id is None:
        raise NotFound(f"incident {incident_id} does not exist")
    with _busy_as_conflict(), transaction.atomic():
        instance = _lock_instance(instance_id)
        incident = Incident.objects.select_related("job").get(pk=incident_id)
        if incident.status != IncidentStatus.OPEN or incident.task_id is None:
            raise Conflict(f"incident {incident_id} is not open", code="incident_not_open")
        _require_active(instance)
        hooks.run_checks(hooks.Command(command, instance, actor, data=data))
        run = CommandRun.begin(instance, _load(instance), actor=actor)
        outcome: dict[str, Any] = {"failure": None}
        yield incident, run, outcome
        incident.status, incident.resolved_at = IncidentStatus.RESOLVED, run.now
        incident.save(update_fields=["status", "resolved_at"])
        run.finish(
            [AuditEntry(command, task_id=incident.task_id, element_id=incident.element_id,
                        payload={"incident": incident.pk, "data": data})],
            failure=outcome["failure"], resolved_incident=True,
        )


def incident_retry(*, incident_id: int, actor: Any, data: dict[str, Any] | None = None) -> ProcessInstance:
    """Re-run the failed step of an open incident, optionally after editing its data.

    A failed script is put back to READY and re-run now; a failed job is
    queued for one more attempt (its parameters re-evaluated when data changed).
    """
    from .models import JobStatus

    with _incident_command(incident_id, actor, "incident_retry", dict(data or {})) as (incident, run, outcome):
        if incident.job is not None:
            job = incident.job
            if data:
                job.params = jsonable(runtime.update_started_task(run.workflow, incident.task_id, data))
            job.status, job.run_at, job.max_attempts = JobStatus.QUEUED, run.now, job.attempt + 1
            job.save(update_fields=["status", "run_at", "max_attempts", "params", "updated_at"])
            nudge_on_commit([job.pk])
        else:
            runtime.retry_failed_task(run.workflow, incident.task_id, data)
            outcome["failure"] = runtime.advance(run.workflow)
    return run.instance


def incident_skip(*, incident_id: int, actor: Any, data: dict[str, Any] | None = None) -> ProcessInstance:
    """Complete the failed step as if it had succeeded with ``data``, then advance."""
    from .models import JobStatus

    with _incident_command(incident_id, actor, "incident_skip", dict(data or {})) as (incident, run, outcome):
        runtime.skip_task(run.workflow, incident.task_id, dict(data or {}))
        outcome["failure"] = runtime.advance(run.workflow)
        if incident.job is not None:
            incident.job.status = JobStatus.CANCELLED
            incident.job.save(update_fields=["status", "updated_at"])
    return run.instance


def _lock_job(job_id: int):
    """Lock a job's instance, then read the job (instance first: one lock order for every command)."""
    from .models import Job

    instance_id = Job.objects.filter(pk=job_id).values_list("instance_id", flat=True).first()
    if instance_id is None:
        raise NotFound(f"job {job_id} does not exist or belongs to no instance")
    instance = _lock_instance(instance_id)
    return instance, Job.objects.get(pk=job_id)


def _require_attempt(job, attempt: int) -> None:
    from .models import JobStatus

    if job.status != JobStatus.RUNNING or job.attempt != attempt:
        raise Conflict(f"job {job.pk} attempt {attempt} is stale (job is {job.status}, attempt {job.attempt})",
                       code="job_stale")


def job_complete(*, job_id: int, attempt: int, result: Any) -> ProcessInstance:
    """Finish a service task with its connector's result, if this attempt still owns the job."""
    from .models import JobStatus

    with _busy_as_conflict(), transaction.atomic():
        instance, job = _lock_job(job_id)
        _require_attempt(job, attempt)
        run = CommandRun.begin(instance, _load(instance), actor=None)
        runtime.complete_service_task(run.workflow, job.task_id, result)
        failure = runtime.advance(run.workflow)
        job.status, job.result, job.lease_expires_at = JobStatus.DONE, jsonable(result), None
        job.save(update_fields=["status", "result", "lease_expires_at", "updated_at"])
        run.finish(
            [AuditEntry("job_complete", task_id=job.task_id, element_id=job.element_id,
                        payload={"job": job.pk, "connector": job.connector, "attempt": attempt})],
            failure=failure,
        )
    return instance


def job_fail(
    *, job_id: int, attempt: int, error_type: str, message: str, traceback_text: str, retry_now: bool = False
) -> ProcessInstance:
    """Record a failed attempt: back off and requeue, or open an incident after the last attempt."""
    from .jobs import backoff_seconds
    from .models import Incident, JobStatus

    with _busy_as_conflict(), transaction.atomic():
        instance, job = _lock_job(job_id)
        _require_attempt(job, attempt)
        now = timezone.now()
        job.last_error, job.lease_expires_at = f"{error_type}: {message}", None
        payload = {"job": job.pk, "connector": job.connector, "attempt": attempt, "error_type": error_type,
                   "message": message}
        if attempt < job.max_attempts:
            delay = 0 if retry_now else backoff_seconds(attempt, job.backoff_seconds)
            job.status, job.run_at = JobStatus.QUEUED, now + timedelta(seconds=delay)
            job.save(update_fields=["status", "run_at", "last_error", "lease_expires_at", "updated_at"])
            entry = AuditEntry("job_retry_scheduled", task_id=job.task_id, element_id=job.element_id,
                               payload={**payload, "run_at": job.run_at.isoformat()})
            CommandRun.status_only(instance, None, entry, instance.status)
            nudge_on_commit([job.pk]) if retry_now else None
            return instance
        job.status = JobStatus.FAILED
        job.save(update_fields=["status", "last_error", "lease_expires_at", "updated_at"])
        incident = Incident.objects.create(
            instance=instance, job=job, task_id=job.task_id, element_id=job.element_id,
            error_type=error_type[:255], message=message, traceback=traceback_text,
        )
        entry = AuditEntry("incident_open", task_id=job.task_id, element_id=job.element_id,
                           payload={**payload, "incident": incident.pk})
        status = InstanceStatus.SUSPENDED if instance.status == InstanceStatus.SUSPENDED else InstanceStatus.INCIDENT
        CommandRun.status_only(instance, None, entry, status)
    return instance
