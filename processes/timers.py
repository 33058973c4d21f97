"""Timers: fire due timer waits inside instances, and start instances on schedules.

Inside an instance SpiffWorkflow waits on the timer; Baton keeps the earliest
due time in ``ProcessInstance.next_timer_at`` (set by every command) and the
sweeper fires due instances here, one command and one transaction each.
A timer start event cannot wait inside an instance that does not exist yet,
so each published one becomes a ``Schedule`` row that the sweeper runs.

Exactly once (RELIABILITY R7): a timer fires under the instance lock only
if ``next_timer_at`` is still due once the lock is held, and the command that
fires it moves ``next_timer_at``; a schedule is claimed by a conditional
UPDATE that moves ``next_run_at``. Two sweepers at once therefore fire each
timer and start each scheduled instance once.
"""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from bpmn.models import ProcessDefinition
from bpmn.problems import Problem
from core.errors import Busy, DiagramRejected

from . import hooks, services
from .audit import AuditEntry
from .engine import runtime
from .engine import timers as engine_timers
from .models import InstanceStatus, ProcessInstance, Schedule
from .persistence import CommandRun
from .selectors import definition_specs
from .services import _busy_as_conflict, _load, _lock_instance

log = logging.getLogger("baton.timers")

# Timers fire only while the instance can advance: a suspended instance keeps its
# due timer until it is resumed; one in incident waits for the operator.
FIRING_STATUSES = (InstanceStatus.RUNNING, InstanceStatus.WAITING)


def instance_fire_timers(*, instance_id: int, now: datetime | None = None) -> list[str]:
    """Fire the due timers of one instance and advance it; return the element ids fired.

    One command: lock, re-check under the lock that the instance is running
    or waiting and ``next_timer_at`` is still due (another sweeper may have
    just fired it), load, fire, advance, save with one ``timer_fired`` audit
    event per timer. When nothing is due or nothing fired, nothing is
    written: no state, version or audit change. ``now`` should be the current
    time (the library reads the real clock when it fires).
    """
    now = now or timezone.now()
    with _busy_as_conflict(), transaction.atomic():
        instance = _lock_instance(instance_id)
        if (instance.status not in FIRING_STATUSES or instance.next_timer_at is None
                or instance.next_timer_at > now):
            return []
        hooks.run_checks(hooks.Command("timer_fire", instance, None))
        run = CommandRun.begin(instance, _load(instance), actor=None)
        failure = None
        try:
            fired = engine_timers.fire_due(run.workflow, now)
        except Exception as exc:  # noqa: BLE001 - a timer the library cannot evaluate is an incident
            failure = runtime.failure_from(exc, run.workflow)
            fired = [failure.element_id] if failure.element_id else []
        if not fired and failure is None:
            return []
        failure = failure or runtime.advance(run.workflow)
        run.finish([AuditEntry("timer_fired", element_id=element_id) for element_id in fired], failure=failure)
    return fired


def timers_fire_due(*, now: datetime | None = None, limit: int = 100) -> int:
    """Fire the timers of up to ``limit`` instances due at ``now``; return how many timers fired.

    Reads the indexed ``next_timer_at`` column (earliest first), then fires
    each instance in its own transaction, so one failing instance never
    stops the others (it is logged and retried at the next sweep).
    """
    now = now or timezone.now()
    due = list(
        ProcessInstance.objects.filter(next_timer_at__lte=now, status__in=FIRING_STATUSES)
        .order_by("next_timer_at", "pk").values_list("pk", flat=True)[:limit]
    )
    fired = 0
    for instance_id in due:
        try:
            fired += len(instance_fire_timers(instance_id=instance_id, now=now))
        except Busy:
            log.info("instance %s is busy; its timers fire at the next sweep", instance_id)
        except Exception:  # noqa: BLE001 - isolate instances from each other
            log.exception("firing the timers of instance %s failed", instance_id)
    return fired


# --- schedules: timer start events -------------------------------------------------------


def schedules_replace(*, definitions: list[ProcessDefinition], now: datetime | None = None) -> list[Schedule]:
    """Create the schedules of newly published definitions; retire older versions' schedules.

    Every new version of a process key deactivates the schedules of its older
    versions (also when it has no timer start event any more: the newest
    version is the one that runs). ``Schedule.expression`` keeps the evaluated
    ISO-8601 text. A start timer whose expression needs instance data cannot
    be scheduled and refuses the upload (raised inside the publishing
    transaction, which rolls it back).
    """
    now = now or timezone.now()
    created: list[Schedule] = []
    for definition in definitions:
        Schedule.objects.filter(
            definition__process_key=definition.process_key, definition__version__lt=definition.version, active=True,
        ).update(active=False)
        if "timerEventDefinition" not in (definition.bpmn_xml or ""):
            continue  # no timer at all: skip loading the specs
        spec, _ = definition_specs(definition)
        for timer in engine_timers.start_timers(spec):
            try:
                value = engine_timers.start_timer_value(timer.expression)
                next_run_at, remaining = engine_timers.schedule_first_run(timer.kind, value, now=now)
            except Exception as exc:  # noqa: BLE001 - sandbox and library errors vary
                problem = Problem(message=f"the timer start event cannot be scheduled: {exc}",
                                  element_id=timer.element_id, file=definition.source_name)
                raise DiagramRejected(f"The upload was refused (1 problem). First: {problem}",
                                      details=[problem.as_dict()]) from exc
            created.append(Schedule(definition=definition, element_id=timer.element_id, kind=timer.kind,
                                    expression=value, next_run_at=next_run_at, remaining=remaining))
    return Schedule.objects.bulk_create(created) if created else []


def schedules_published_receiver(sender: Any, *, definitions: list[ProcessDefinition], **kwargs: Any) -> None:
    """Connected to ``bpmn.signals.definition_published``: schedule the new versions' start timers."""
    schedules_replace(definitions=definitions)


def _after_run(schedule: Schedule, now: datetime) -> tuple[datetime | None, int | None]:
    if schedule.kind == Schedule.Kind.CYCLE:
        return engine_timers.schedule_after_run(schedule.expression, due=schedule.next_run_at,
                                                remaining=schedule.remaining, now=now)
    return None, schedule.remaining  # date and duration run once


def _instance_fire_start(*, instance_id: int, element_id: str, schedule_id: int) -> None:
    """Fire the start timer an instance started by a schedule would otherwise wait on."""
    instance = _lock_instance(instance_id)
    run = CommandRun.begin(instance, _load(instance), actor=None)
    if not engine_timers.fire_start_event(run.workflow, element_id):
        return  # the library already fired it (a date in the past): nothing to write
    failure = runtime.advance(run.workflow)
    run.finish([AuditEntry("timer_fired", element_id=element_id, payload={"schedule": schedule_id})],
               failure=failure)


def schedule_run(*, schedule: Schedule, now: datetime | None = None) -> ProcessInstance | None:
    """Claim one due run of ``schedule`` and start its instance; None if another sweeper claimed it.

    One transaction: a conditional UPDATE moves ``next_run_at`` (and
    ``remaining``, ``active``) only if it still holds the value read, then the
    instance starts and its start timer fires at once, so the new instance
    does not wait again on the timer that started it. If the start fails the
    claim rolls back with it and the next sweep retries.
    """
    now = now or timezone.now()
    next_run_at, remaining = _after_run(schedule, now)
    with _busy_as_conflict(), transaction.atomic():
        claimed = Schedule.objects.filter(pk=schedule.pk, active=True, next_run_at=schedule.next_run_at).update(
            next_run_at=next_run_at, remaining=remaining, active=next_run_at is not None, last_run_at=now,
        )
        if not claimed:
            return None
        definition = schedule.definition
        instance = services.instance_start(process_key=definition.process_key, version=definition.version)
        _instance_fire_start(instance_id=instance.pk, element_id=schedule.element_id, schedule_id=schedule.pk)
    instance.refresh_from_db()
    return instance


def schedules_run_due(*, now: datetime | None = None, limit: int = 100) -> int:
    """Start an instance for every active schedule due at ``now``; return how many started.

    Runs missed while no sweeper ran are coalesced into one start (see
    ``engine.timers.schedule_after_run``). Each schedule runs in its own
    transaction; a failure is logged and retried at the next sweep.
    """
    now = now or timezone.now()
    due = list(
        Schedule.objects.filter(active=True, next_run_at__lte=now)
        .select_related("definition").order_by("next_run_at", "pk")[:limit]
    )
    started = 0
    for schedule in due:
        try:
            started += schedule_run(schedule=schedule, now=now) is not None
        except Busy:
            log.info("schedule %s is busy; it runs at the next sweep", schedule.pk)
        except Exception:  # noqa: BLE001 - isolate schedules from each other
            log.exception("running schedule %s failed", schedule.pk)
    return started
