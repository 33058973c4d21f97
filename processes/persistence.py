"""Persist one command's outcome: state, work items, activity log, incidents, audit.

``CommandRun`` is created after the instance row is locked and the workflow
loaded; ``finish`` writes everything the command changed with bulk statements
(the statement count per command is asserted in tests):
instance UPDATE, HumanTask INSERT/UPDATE, Job INSERT (service tasks, thrown
messages and signals), Activity INSERT/UPDATE, MessageSubscription
INSERT/DELETE, Incident INSERT, one AuditEvent INSERT and webhook delivery jobs
(``webhooks_emit``) - each only when needed.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from django.conf import settings
from django.utils import timezone

from . import hooks
from .audit import AuditEntry, audit_events_build
from .engine import runtime
from .engine import timers as engine_timers
from .engine import messages as engine_messages
from .messages import subscriptions_sync, thrown_events_enqueue
from .engine.serializer import SERIALIZER_VERSION, BatonWorkflow, state_dumps
from .jobs import seconds_from
from .nudge import nudge_on_commit
from .models import (
    Activity,
    AuditEvent,
    HumanTask,
    HumanTaskStatus,
    Incident,
    InstanceStatus,
    Job,
    JobStatus,
    ProcessInstance,
)
from .selectors import definition_forms
from .webhooks import webhooks_emit

log = logging.getLogger("baton.instances")


def jsonable(value: Any) -> Any:
    """Return ``value`` as plain JSON types (dates and decimals become strings)."""
    return json.loads(json.dumps(value, default=str))


def _actor(actor: Any) -> Any:
    return actor if getattr(actor, "pk", None) else None


@dataclass
class CommandRun:
    """The in-flight state of one command on one locked instance."""

    instance: ProcessInstance
    workflow: BatonWorkflow
    actor: Any
    now: datetime
    since: float
    before: dict[UUID, int]
    before_human: set[UUID]
    completed_task_ids: set[UUID] = field(default_factory=set)
    before_waits: set[UUID] = field(default_factory=set)  # message/signal waits (subscription task ids)
    created_tasks: list[HumanTask] = field(default_factory=list)  # HumanTasks this command opened

    @classmethod
    def begin(cls, instance: ProcessInstance, workflow: BatonWorkflow, *, actor: Any) -> "CommandRun":
        return cls(
            instance=instance,
            workflow=workflow,
            actor=actor,
            now=timezone.now(),
            since=time.time(),
            before=runtime.tracked_states(workflow),
            before_human={t.id for t in runtime.human_tasks_ready(workflow)},
            before_waits=engine_messages.wait_ids(workflow),
        )

    def seed_data(self, data: dict[str, Any]) -> None:
        """Give a new workflow its initial data (on the start task, so every path inherits it)."""
        for task in self.workflow.get_tasks(state=runtime.TaskState.READY):
            task.data.update(data)

    def finish(
        self,
        entries: list[AuditEntry],
        *,
        failure: runtime.StepFailure | None = None,
        status: str | None = None,
        resolved_incident: bool = False,
    ) -> None:
        """Write everything the command changed; the caller's transaction commits it."""
        instance, entries = self.instance, list(entries)
        self._sync_human_tasks()
        calls, call_failure = self._service_calls()
        failure = failure or call_failure
        self._create_jobs(calls)
        self._log_activities()
        subscriptions_sync(self)
        entries += thrown_events_enqueue(self)
        if failure is not None:
            incident = Incident.objects.create(
                instance=instance, task_id=failure.task_id, element_id=failure.element_id,
                error_type=failure.error_type[:255], message=failure.message, traceback=failure.traceback,
            )
            entries.append(AuditEntry("incident_open", task_id=failure.task_id, element_id=failure.element_id,
                                      payload={"incident": incident.pk, "error_type": failure.error_type,
                                               "message": failure.message}))
        instance.status = status or self._status(failure, resolved_incident)
        if instance.status in (InstanceStatus.COMPLETED, InstanceStatus.CANCELLED):
            instance.ended_at = self.now
            if calls or runtime.TaskState.STARTED in self.before.values():  # only then can a job be queued
                Job.objects.filter(instance=instance, status=JobStatus.QUEUED).update(status=JobStatus.CANCELLED)
            if instance.status == InstanceStatus.COMPLETED:
                entries.append(AuditEntry("instance_complete"))
        hooks.command_finished(self, entries)
        instance.state = state_dumps(self.workflow, definition_id=instance.definition_id)
        instance.serializer_version = SERIALIZER_VERSION
        instance.data = jsonable(runtime.instance_data(self.workflow))
        instance.version += 1
        instance.next_timer_at = engine_timers.next_due(self.workflow)
        events = audit_events_build(instance=instance, actor=_actor(self.actor), entries=entries, now=self.now)
        instance.save(update_fields=[
            "status", "state", "serializer_version", "data", "version", "ended_at",
            "next_timer_at", "audit_seq", "audit_head", "updated_at",
        ])
        AuditEvent.objects.bulk_create(events)
        webhooks_emit(self, entries)
        log.info("%s on instance %s -> %s", entries[0].command if entries else "command", instance.pk, instance.status,
                 extra={"instance_id": instance.pk, "command": entries[0].command if entries else "",
                        "status": instance.status})

    @staticmethod
    def status_only(instance: ProcessInstance, actor: Any, entry: AuditEntry, status: str) -> None:
        """Change only the status (suspend/resume): no workflow load or save."""
        instance.status = status
        instance.version += 1
        events = audit_events_build(instance=instance, actor=_actor(actor), entries=[entry], now=timezone.now())
        instance.save(update_fields=["status", "version", "audit_seq", "audit_head", "updated_at"])
        AuditEvent.objects.bulk_create(events)
        webhooks_emit(None, [entry], instance=instance)

    def _status(self, failure: runtime.StepFailure | None, resolved_incident: bool) -> str:
        if failure is not None:
            return InstanceStatus.INCIDENT
        if runtime.is_completed(self.workflow):
            return InstanceStatus.COMPLETED
        if self.instance.status == InstanceStatus.INCIDENT and (
            not resolved_incident or self.instance.incidents.filter(status="open").exists()
        ):
            return InstanceStatus.INCIDENT
        return InstanceStatus.RUNNING if runtime.waiting_for_engine(self.workflow) else InstanceStatus.WAITING

    def _sync_human_tasks(self) -> None:
        ready = runtime.human_tasks_ready(self.workflow)
        new = [t for t in ready if t.id not in self.before_human]
        gone = self.before_human - {t.id for t in ready} - self.completed_task_ids
        if new:
            tasks = [self._human_task(view) for view in new]
            hooks.tasks_opening(self, tasks)
            self.created_tasks = HumanTask.objects.bulk_create(tasks)
        if gone:
            HumanTask.objects.filter(instance=self.instance, task_id__in=gone, status=HumanTaskStatus.OPEN).update(
                status=HumanTaskStatus.CANCELLED, completed_at=self.now
            )

    def _human_task(self, view: runtime.TaskView) -> HumanTask:
        meta = (self.instance.definition.elements or {}).get(view.element_id) or {}
        properties = view.extensions.get("properties") or {}
        form = meta.get("form") if isinstance(meta.get("form"), dict) else {}
        schema_name = properties.get("formJsonSchemaFilename") or form.get("schema")
        ui_name = properties.get("formUiSchemaFilename") or form.get("ui_schema")
        forms = definition_forms(self.instance.definition) if (schema_name or ui_name) else {}
        groups = list(meta.get("candidate_groups") or ([view.lane] if view.lane else []))
        return HumanTask(
            instance=self.instance,
            task_id=view.id,
            element_id=view.element_id,
            name=view.name,
            kind=view.kind,
            lane=view.lane,
            candidate_groups=groups,
            candidate_users=list(meta.get("candidate_users") or []),
            form_schema=forms.get(schema_name) if schema_name else None,
            form_ui=forms.get(ui_name) if ui_name else None,
            priority=int(meta.get("priority") or 0) if str(meta.get("priority") or "0").lstrip("-").isdigit() else 0,
        )

    def _service_calls(self) -> tuple[list[runtime.ServiceCall], runtime.StepFailure | None]:
        try:
            return runtime.service_calls_started(self.workflow, self.before), None
        except Exception as exc:  # noqa: BLE001 - a bad parameter expression is an incident
            return [], runtime.failure_from(exc, self.workflow)

    def _create_jobs(self, calls: list[runtime.ServiceCall]) -> None:
        if not calls:
            return
        jobs = Job.objects.bulk_create([self._job(call) for call in calls])
        nudge_on_commit([job.pk for job in jobs])

    def _job(self, call: runtime.ServiceCall) -> Job:
        """Build a job; retries, timeout and backoff come from the diagram, else from settings."""
        meta = (self.instance.definition.elements or {}).get(call.task.element_id) or {}
        retries = call.retries if call.retries is not None else meta.get("retries")
        retries = retries if isinstance(retries, int) else None
        return Job(
            instance=self.instance,
            kind="service_task",
            task_id=call.task.id,
            element_id=call.task.element_id,
            connector=call.connector,
            params=jsonable(call.params),
            max_attempts=retries + 1 if retries is not None else settings.BATON_JOB_MAX_ATTEMPTS,
            timeout_seconds=seconds_from(meta.get("timeout")),
            backoff_seconds=seconds_from(meta.get("backoff")),
            run_at=self.now,
            idempotency_key=f"{self.instance.pk}:{call.task.id}",
        )

    def _log_activities(self) -> None:
        diff = runtime.activity_diff(self.workflow, self.before)
        if diff.started:
            Activity.objects.bulk_create([
                Activity(
                    instance=self.instance, task_id=view.id, element_id=view.element_id, element_name=view.name,
                    element_type=view.kind, state=state, started_at=self.now,
                    ended_at=self.now if state in ("done", "failed") else None,
                )
                for view, state in diff.started
            ])
        for state, task_ids in diff.ended.items():
            Activity.objects.filter(instance=self.instance, task_id__in=task_ids).update(
                state=state, ended_at=None if state == "active" else self.now
            )
