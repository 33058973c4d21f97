"""Messages and signals: subscriptions, correlation, thrown events between instances.

SpiffWorkflow's own matching accepts any message of the right name while an
instance has no correlation values yet, so every waiting instance would
match. Baton decides instead: when a catch event starts waiting,
``subscriptions_sync`` records a ``MessageSubscription`` with the correlation
key Baton computed (``engine.messages``: the diagram's correlation properties
over the task's data, or the business key); ``message_correlate`` delivers
only to the matching subscriptions, each instance under its own lock, and a
match in several instances is a conflict. Messages and signals an instance
throws become ``Job`` rows (kind ``message``/``signal``) in the command's
transaction; the job worker delivers them through the same functions, in one
transaction with marking the job done, so a delivery happens once.

Signal subscriptions share the table, named ``signal:<name>``.
"""
from __future__ import annotations

import logging
import traceback
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from bpmn.models import ProcessDefinition
from core.errors import BatonError, Conflict, NotFound, ValidationError

from .audit import AuditEntry
from .engine import messages as engine_messages
from .models import Job, JobStatus, MessageSubscription, ProcessInstance

if TYPE_CHECKING:
    from .persistence import CommandRun

log = logging.getLogger("baton.messages")


@dataclass
class CorrelationResult:
    """Which instances a message or signal advanced, and which it started."""

    advanced: list[int] = field(default_factory=list)
    started: list[int] = field(default_factory=list)


# --- inside a command: called by CommandRun.finish ---------------------------------------------------------

def subscriptions_sync(run: CommandRun) -> None:
    """Bring the instance's MessageSubscription rows in line with its waiting catch events.

    Compares the waits before the command (``run.before_waits``) with the
    waits now: no statement at all when nothing changed (the common path of a
    process without message waits), else one DELETE and/or one bulk INSERT.
    Keys are computed only for the new waits.
    """
    after = engine_messages.wait_ids(run.workflow)
    gone, new = run.before_waits - after, after - run.before_waits
    if gone:
        MessageSubscription.objects.filter(instance=run.instance, task_id__in=gone).delete()
    if new:
        MessageSubscription.objects.bulk_create([
            MessageSubscription(instance=run.instance, task_id=w.task_id, element_id=w.element_id[:255],
                                message_name=w.message_name[:255], correlation_key=w.correlation_key)
            for w in engine_messages.waits(run.workflow, business_key=run.instance.business_key, only=new)
        ])


def thrown_events_enqueue(run: CommandRun) -> list[AuditEntry]:
    """Turn the messages and signals the command threw into Job rows; return their audit entries.

    The jobs belong to no instance (the sender may complete in this very
    command, which cancels its queued jobs); ``params.source_instance`` names
    the sender. A message without correlation properties carries the sender's
    business key as its correlation key, when it has one.
    """
    from .nudge import nudge_on_commit
    from .persistence import jsonable

    events = engine_messages.thrown(run.workflow, since=run.since)
    if not events:
        return []
    instance = run.instance
    jobs = Job.objects.bulk_create([
        Job(
            instance=None, kind=event.kind, task_id=event.task_id, element_id=event.element_id,
            params=jsonable({
                "name": event.name, "payload": event.payload,
                "correlation_key": event.correlation_key if event.correlation_key is not None
                else (instance.business_key or None),
                "source_instance": instance.pk,
            }),
            max_attempts=getattr(settings, "BATON_JOB_MAX_ATTEMPTS", 3), run_at=run.now,
            idempotency_key=f"{event.kind}:{instance.pk}:{instance.version}:{index}",
        )
        for index, event in enumerate(events)
    ])
    nudge_on_commit([job.pk for job in jobs])
    return [
        AuditEntry(f"{job.kind}_sent", task_id=job.task_id, element_id=job.element_id,
                   payload={"job": job.pk, "name": job.params["name"],
                            "correlation_key": job.params["correlation_key"]})
        for job in jobs
    ]


# --- commands --------------------------------------------------------------------------------------------

def _payload(payload: dict[str, Any] | None) -> dict[str, Any]:
    if payload is not None and not isinstance(payload, dict):
        raise ValidationError("a message payload must be a JSON object")
    return dict(payload or {})


def message_correlate(
    *,
    name: str,
    correlation_key: str | None = None,
    payload: dict[str, Any] | None = None,
    business_key: str = "",
    actor: Any = None,
) -> CorrelationResult:
    """Deliver a message to the one instance waiting for it, or start one by its message start event.

    Matching: subscriptions named ``name``, with exactly ``correlation_key``
    when given, of instances with ``business_key`` when given. Several
    matching instances are ambiguous (``Conflict``, code
    ``ambiguous_correlation``, ids in ``details``); none, and no published
    process starts on this message, is ``NotFound``. An instance started by a
    message gets ``business_key``, or the correlation key when its start
    message has no correlation properties (later messages keyed alike reach it).
    """
    if not name:
        raise ValidationError("a message needs a name")
    payload = _payload(payload)
    subscriptions = MessageSubscription.objects.filter(message_name=name)
    if correlation_key is not None:
        subscriptions = subscriptions.filter(correlation_key=correlation_key)
    if business_key:
        subscriptions = subscriptions.filter(instance__business_key=business_key)
    instance_ids = sorted(set(subscriptions.values_list("instance_id", flat=True)))
    if len(instance_ids) > 1:
        raise Conflict(
            f"message '{name}' matches {len(instance_ids)} waiting instances ({', '.join(map(str, instance_ids))}); "
            "correlate with a key or business key that names one",
            code="ambiguous_correlation", details={"instances": instance_ids},
        )
    if instance_ids:
        _deliver(instance_id=instance_ids[0], name=name, correlation_key=correlation_key, payload=payload, actor=actor)
        return CorrelationResult(advanced=instance_ids)
    definitions = _start_definitions(name)
    if not definitions:
        raise NotFound(f"no instance is waiting for message '{name}'"
                       + (f" with key '{correlation_key}'" if correlation_key is not None else "")
                       + " and no process starts on it")
    if len(definitions) > 1:
        keys = sorted(d.process_key for d in definitions)
        raise Conflict(f"message '{name}' starts several processes ({', '.join(keys)})",
                       code="ambiguous_correlation", details={"processes": keys})
    definition = definitions[0]
    start_key = business_key
    if not start_key and correlation_key and not _start_has_correlation(definition, name):
        start_key = correlation_key  # the key of an uncorrelated message is a business key
    instance = _start_by_event(definition=definition, name=name, payload=payload, business_key=start_key, actor=actor)
    return CorrelationResult(started=[instance.pk])


def signal_broadcast(*, name: str, payload: dict[str, Any] | None = None, actor: Any = None) -> CorrelationResult:
    """Deliver a signal to every instance waiting for it and start every process with that signal start event.

    Each instance advances under its own lock; an instance that stopped
    waiting in the meantime is skipped. A signal nobody waits for is not an error.
    """
    if not name:
        raise ValidationError("a signal needs a name")
    payload = _payload(payload)
    subscription_name = engine_messages.SIGNAL_PREFIX + name
    result = CorrelationResult()
    instance_ids = sorted(set(
        MessageSubscription.objects.filter(message_name=subscription_name).values_list("instance_id", flat=True)))
    for instance_id in instance_ids:
        try:
            _deliver(instance_id=instance_id, name=subscription_name, correlation_key=None, payload=payload,
                     actor=actor)
        except Conflict as exc:
            if exc.code not in ("not_waiting", "instance_not_active"):
                raise
            continue
        result.advanced.append(instance_id)
    for definition in _start_definitions(subscription_name):
        result.started.append(_start_by_event(definition=definition, name=subscription_name, payload=payload,
                                              business_key="", actor=actor).pk)
    return result


def _names(subscription_name: str) -> tuple[str, str, str]:
    """Return (audit command, hook command kind, name as the diagram writes it) for a subscription name."""
    if subscription_name.startswith(engine_messages.SIGNAL_PREFIX):
        return "signal_received", "signal_broadcast", subscription_name.removeprefix(engine_messages.SIGNAL_PREFIX)
    return "message_received", "message_correlate", subscription_name


def _deliver(*, instance_id: int, name: str, correlation_key: str | None, payload: dict[str, Any], actor: Any) -> None:
    """Lock one instance, re-read its matching subscriptions, deliver and advance (one command)."""
    from . import hooks
    from .engine import runtime
    from .persistence import CommandRun
    from .services import _busy_as_conflict, _load, _lock_instance, _require_active

    with _busy_as_conflict(), transaction.atomic():
        instance = _lock_instance(instance_id)
        _require_active(instance)
        rows = MessageSubscription.objects.filter(instance=instance, message_name=name)
        if correlation_key is not None:
            rows = rows.filter(correlation_key=correlation_key)
        slot_ids = list(rows.values_list("task_id", flat=True))
        if not slot_ids:
            raise Conflict(f"instance {instance_id} is no longer waiting for '{name}'", code="not_waiting")
        command, kind, shown = _names(name)
        hooks.run_checks(hooks.Command(kind, instance, actor, data=payload))
        run = CommandRun.begin(instance, _load(instance), actor=actor)
        delivered = engine_messages.deliver(run.workflow, slot_ids, payload)
        failure = runtime.advance(run.workflow)
        run.finish([
            AuditEntry(command, task_id=wait.task_id, element_id=wait.element_id,
                       payload={"name": shown, "correlation_key": correlation_key, "payload": payload})
            for wait in delivered
        ], failure=failure)


def _start_by_event(*, definition: ProcessDefinition, name: str, payload: dict[str, Any], business_key: str,
                    actor: Any) -> ProcessInstance:
    """Start an instance and deliver the message/signal to its start event, in one command.

    As ``services.instance_start``, but the start event's wait is satisfied
    before the command finishes, so no other correlation ever sees it.
    """
    from . import hooks
    from .engine import runtime
    from .engine.serializer import SERIALIZER_VERSION, new_workflow
    from .persistence import CommandRun
    from .selectors import definition_specs
    from .services import _busy_as_conflict

    specs = definition_specs(definition)
    command, _, shown = _names(name)
    with _busy_as_conflict(), transaction.atomic():
        instance = ProcessInstance(
            definition=definition, business_key=business_key, state=b"", serializer_version=SERIALIZER_VERSION,
            started_by=actor if getattr(actor, "pk", None) else None,
        )
        hooks.run_checks(hooks.Command("start", instance, actor, data=payload))
        instance.save(force_insert=True)
        run = CommandRun.begin(instance, new_workflow(specs), actor=actor)
        failure = runtime.advance(run.workflow)
        entries = [AuditEntry("instance_start", payload={"business_key": business_key, "started_by": command,
                                                         "name": shown})]
        if failure is None:
            delivered = engine_messages.deliver_to_start(run.workflow, name, payload)
            entries += [AuditEntry(command, task_id=w.task_id, element_id=w.element_id,
                                   payload={"name": shown, "payload": payload}) for w in delivered]
            failure = runtime.advance(run.workflow)
        run.finish(entries, failure=failure)
    return instance


def _start_definitions(subscription_name: str) -> list[ProcessDefinition]:
    """Latest version of every process whose start event waits for ``subscription_name``.

    One query for the (small) definition index; the start events of each
    definition version are read from its cached specs once per process.
    """
    latest: dict[str, tuple[int, int, str]] = {}
    for pk, key, version, content_hash in ProcessDefinition.objects.values_list(
            "pk", "process_key", "version", "content_hash"):
        if key not in latest or version > latest[key][1]:
            latest[key] = (pk, version, content_hash)
    ids = [pk for pk, _, content_hash in latest.values() if subscription_name in _start_names(pk, content_hash)]
    return list(ProcessDefinition.objects.filter(pk__in=ids).order_by("process_key")) if ids else []


@lru_cache(maxsize=1024)
def _start_names(definition_id: int, content_hash: str) -> frozenset[str]:
    from .selectors import definition_specs

    definition = ProcessDefinition(pk=definition_id, content_hash=content_hash)
    spec, _ = definition_specs(definition)
    return frozenset(engine_messages.start_event_names(spec))


def _start_has_correlation(definition: ProcessDefinition, name: str) -> bool:
    from .selectors import definition_specs

    spec, _ = definition_specs(definition)
    return engine_messages.start_has_correlation(spec, name)


# --- jobs: thrown messages and signals, run by jobs.job_execute -------------------------------------------

def event_job_run(*, job: Job) -> str:
    """Deliver a claimed message/signal job and mark it done in the same transaction.

    A failure (nobody waiting yet, ambiguous, busy) is recorded and retried
    with backoff like any job; a worker whose attempt went stale delivers nothing.
    """
    params = job.params or {}
    try:
        with transaction.atomic():
            if job.kind == "signal":
                result = signal_broadcast(name=params.get("name", ""), payload=params.get("payload"))
            else:
                result = message_correlate(name=params.get("name", ""), correlation_key=params.get("correlation_key"),
                                           payload=params.get("payload"))
            done = Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING, attempt=job.attempt).update(
                status=JobStatus.DONE, result=asdict(result), lease_expires_at=None, updated_at=timezone.now())
            if not done:
                raise Conflict(f"job {job.pk} attempt {job.attempt} is stale", code="job_stale")
    except BatonError as exc:
        event_job_fail(job_id=job.pk, attempt=job.attempt, error_type=exc.code, message=exc.message)
        return "failed"
    except Exception as exc:  # noqa: BLE001 - every error is recorded on the job
        event_job_fail(job_id=job.pk, attempt=job.attempt, error_type=exc.__class__.__name__,
                       message=str(exc) or exc.__class__.__name__,
                       traceback_text="".join(traceback.format_exception(exc)))
        return "failed"
    return "done"


def event_job_fail(*, job_id: int, attempt: int, error_type: str, message: str, traceback_text: str = "",
                   retry_now: bool = False) -> None:
    """Record a failed delivery attempt: requeue with backoff, or fail the job after its last attempt.

    These jobs belong to no instance, so the last failure is logged and left
    on the job row (status ``failed``, ``last_error``) rather than opening an incident.
    """
    from .jobs import backoff_seconds
    from .nudge import nudge_on_commit

    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.status != JobStatus.RUNNING or job.attempt != attempt:
            return
        job.last_error, job.lease_expires_at = f"{error_type}: {message}", None
        if attempt < job.max_attempts:
            delay = 0 if retry_now else backoff_seconds(attempt)
            job.status, job.run_at = JobStatus.QUEUED, timezone.now() + timedelta(seconds=delay)
            if retry_now:
                nudge_on_commit([job.pk])
        else:
            job.status = JobStatus.FAILED
            log.warning("%s job %s could not be delivered after %s attempts: %s%s", job.kind, job.pk, attempt,
                        job.last_error, f"\n{traceback_text}" if traceback_text else "")
        job.save(update_fields=["status", "run_at", "last_error", "lease_expires_at", "updated_at"])
