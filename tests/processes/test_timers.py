"""Timers on real diagrams: intermediate, boundary (SLA, reminder, cycle), subprocess, schedules.

Time moves with time-machine; the sweeper runs in-process
(``sweep(nudge_due=False)``). Every command loads the workflow from the
database, so each step also proves that timer state survives save and load.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
import time_machine
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from bpmn.models import ProcessDefinition
from bpmn.services import definition_upload
from core.errors import DiagramRejected
from processes import services
from processes.engine import timers as engine_timers
from processes.models import (
    Activity,
    AuditEvent,
    HumanTask,
    HumanTaskStatus,
    InstanceStatus,
    ProcessInstance,
    Schedule,
)
from processes.sweeper import sweep
from processes.timers import instance_fire_timers, schedules_run_due, timers_fire_due

from .conftest import FIXTURES, upload

TIMERS = FIXTURES / "timers"
T0 = datetime(2025, 3, 3, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def clock():
    """Freeze time at ``T0``; tests move it with ``clock.move_to``."""
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def at(clock, **delta) -> datetime:
    when = T0 + timedelta(**delta)
    clock.move_to(when)
    return when


def commands(instance: ProcessInstance) -> list[str]:
    return list(AuditEvent.objects.filter(instance=instance).order_by("seq").values_list("command", flat=True))


def open_elements(instance: ProcessInstance) -> list[str]:
    return sorted(instance.human_tasks.filter(status=HumanTaskStatus.OPEN).values_list("element_id", flat=True))


def done_count(instance: ProcessInstance, element_id: str) -> int:
    return Activity.objects.filter(instance=instance, element_id=element_id, state="done").count()


def fresh(instance: ProcessInstance) -> ProcessInstance:
    instance.refresh_from_db()
    return instance


# --- timers inside instances ---------------------------------------------------------------


@pytest.mark.django_db
def test_intermediate_timer_fires_after_its_duration_and_not_before(clock):
    upload(TIMERS / "intermediate_timer.bpmn")
    instance = services.instance_start(process_key="timer_wait")
    assert instance.status == InstanceStatus.WAITING
    assert instance.next_timer_at == T0 + timedelta(hours=2)
    assert open_elements(instance) == []

    at(clock, hours=1, minutes=59)
    assert sweep(nudge_due=False).timers_fired == 0
    assert fresh(instance).version == 1 and commands(instance) == ["instance_start"]

    at(clock, hours=2, seconds=1)
    report = sweep(nudge_due=False)

    assert report.timers_fired == 1
    instance = fresh(instance)
    assert open_elements(instance) == ["review"]
    assert instance.next_timer_at is None and instance.status == InstanceStatus.WAITING
    assert commands(instance) == ["instance_start", "timer_fired"]
    assert AuditEvent.objects.get(instance=instance, command="timer_fired").element_id == "wait_2h"
    assert done_count(instance, "wait_2h") == 1
    assert sweep(nudge_due=False).timers_fired == 0  # fired once; nothing left to fire


@pytest.mark.django_db
def test_sla_boundary_timer_cancels_approve_and_escalates_to_managers(clock):
    upload(TIMERS / "sla_escalation.bpmn")
    instance = services.instance_start(process_key="sla_escalation")
    approve = instance.human_tasks.get(element_id="approve")
    assert fresh(instance).next_timer_at == T0 + timedelta(hours=48)

    at(clock, hours=47)
    assert sweep(nudge_due=False).timers_fired == 0
    assert open_elements(instance) == ["approve"]

    at(clock, hours=48, minutes=1)
    assert sweep(nudge_due=False).timers_fired == 1

    approve.refresh_from_db()
    assert approve.status == HumanTaskStatus.CANCELLED
    escalate = instance.human_tasks.get(element_id="escalate")
    assert escalate.status == HumanTaskStatus.OPEN
    assert escalate.lane == "Managers" and escalate.candidate_groups == ["Managers"]
    instance = fresh(instance)
    assert instance.next_timer_at is None
    assert AuditEvent.objects.get(instance=instance, command="timer_fired").element_id == "sla_timer"
    assert Activity.objects.get(instance=instance, element_id="approve").state == "cancelled"
    assert Activity.objects.get(instance=instance, element_id="sla_timer").state == "done"  # fired boundary

    services.task_complete(human_task_id=escalate.pk, actor=None, decision="approve")  # same frozen instant
    assert fresh(instance).status == InstanceStatus.COMPLETED


@pytest.mark.django_db
def test_non_interrupting_reminder_runs_its_script_while_the_task_stays_open(clock):
    upload(TIMERS / "reminder.bpmn")
    instance = services.instance_start(process_key="reminder")
    approve = instance.human_tasks.get(element_id="approve")
    assert fresh(instance).next_timer_at == T0 + timedelta(hours=24)

    at(clock, hours=24, minutes=1)
    assert sweep(nudge_due=False).timers_fired == 1

    approve.refresh_from_db()
    assert approve.status == HumanTaskStatus.OPEN  # the same row: the task was never interrupted
    instance = fresh(instance)
    assert open_elements(instance) == ["approve"] and instance.status == InstanceStatus.WAITING
    assert done_count(instance, "send_reminder") == 1
    assert instance.next_timer_at is None
    workflow = services._load(instance)
    reminder = next(t for t in workflow.get_tasks() if t.task_spec.bpmn_id == "send_reminder")
    assert reminder.data["reminded"] is True

    at(clock, hours=25)
    services.task_complete(human_task_id=approve.pk, actor=None)
    assert fresh(instance).status == InstanceStatus.COMPLETED
    assert done_count(instance, "send_reminder") == 1


@pytest.mark.django_db
@pytest.mark.parametrize("diagram,process_key", [("sla_escalation.bpmn", "sla_escalation"),
                                                 ("reminder.bpmn", "reminder")])
def test_completing_the_task_before_its_boundary_timer_removes_the_timer(clock, diagram, process_key):
    upload(TIMERS / diagram)
    instance = services.instance_start(process_key=process_key)
    assert fresh(instance).next_timer_at is not None

    at(clock, hours=1)
    services.task_complete(human_task_id=instance.human_tasks.get(element_id="approve").pk, actor=None)

    instance = fresh(instance)
    assert instance.status == InstanceStatus.COMPLETED and instance.next_timer_at is None
    at(clock, hours=72)
    assert sweep(nudge_due=False).timers_fired == 0
    assert "timer_fired" not in commands(instance)
    assert not HumanTask.objects.filter(instance=instance, element_id="escalate").exists()


@pytest.mark.django_db
def test_timer_inside_an_embedded_subprocess(clock):
    upload(TIMERS / "subprocess_timer.bpmn")
    instance = services.instance_start(process_key="subprocess_timer")
    assert fresh(instance).next_timer_at == T0 + timedelta(hours=1)

    at(clock, hours=1, seconds=1)
    assert sweep(nudge_due=False).timers_fired == 1

    instance = fresh(instance)
    assert open_elements(instance) == ["review"] and instance.next_timer_at is None
    assert AuditEvent.objects.get(instance=instance, command="timer_fired").element_id == "sub_wait"


@pytest.mark.django_db
def test_cycle_boundary_timer_fires_each_occurrence_then_stops(clock):
    upload(TIMERS / "cycle_reminder.bpmn")
    instance = services.instance_start(process_key="cycle_reminder")
    for hour in (1, 2, 3):
        assert fresh(instance).next_timer_at == T0 + timedelta(hours=hour)
        at(clock, hours=hour, minutes=1)
        assert sweep(nudge_due=False).timers_fired == 1
        assert done_count(instance, "nag") == hour
        assert open_elements(instance) == ["approve"]
    assert fresh(instance).next_timer_at is None
    at(clock, hours=10)
    assert sweep(nudge_due=False).timers_fired == 0
    assert done_count(instance, "nag") == 3
    assert commands(instance).count("timer_fired") == 3


@pytest.mark.django_db
def test_a_suspended_instance_keeps_its_due_timer_until_resumed(clock):
    upload(TIMERS / "sla_escalation.bpmn")
    instance = services.instance_start(process_key="sla_escalation")
    services.instance_suspend(instance_id=instance.pk, actor=None)

    at(clock, hours=50)
    assert sweep(nudge_due=False).timers_fired == 0
    assert open_elements(instance) == ["approve"]

    services.instance_resume(instance_id=instance.pk, actor=None)
    at(clock, hours=50, seconds=1)
    assert sweep(nudge_due=False).timers_fired == 1
    assert open_elements(instance) == ["escalate"]


@pytest.mark.django_db
def test_firing_an_instance_with_nothing_due_writes_nothing(clock):
    upload(TIMERS / "sla_escalation.bpmn")
    instance = services.instance_start(process_key="sla_escalation")
    before = (bytes(fresh(instance).state), instance.version, instance.audit_seq, instance.next_timer_at)

    at(clock, hours=47)
    with CaptureQueriesContext(connection) as queries:
        assert instance_fire_timers(instance_id=instance.pk) == []

    writes = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))]
    assert writes == []
    instance = fresh(instance)
    assert (bytes(instance.state), instance.version, instance.audit_seq, instance.next_timer_at) == before


@pytest.mark.django_db
def test_naive_timer_dates_are_read_as_utc_and_no_timer_means_no_due_time(clock):
    from processes.engine.serializer import new_workflow
    from processes.selectors import definition_specs

    (on_date,) = upload(TIMERS / "scheduled_date.bpmn")  # "2030-01-01T09:00:00", no offset
    workflow = new_workflow(definition_specs(on_date))
    workflow.do_engine_steps()
    assert engine_timers.next_due(workflow) == datetime(2030, 1, 1, 9, 0, tzinfo=timezone.utc)
    (plain,) = upload(FIXTURES / "engine" / "single_user_task.bpmn")
    workflow = new_workflow(definition_specs(plain))
    workflow.do_engine_steps()
    assert engine_timers.next_due(workflow) is None

    assert engine_timers.schedule_first_run("date", "2030-01-01T09:00:00+02:00", now=T0)[0] == datetime(
        2030, 1, 1, 7, 0, tzinfo=timezone.utc)
    assert engine_timers.schedule_first_run("duration", "P1DT2H", now=T0) == (T0 + timedelta(days=1, hours=2), None)
    assert engine_timers.schedule_first_run("cycle", "R/PT15M", now=T0) == (T0 + timedelta(minutes=15), None)
    assert engine_timers.schedule_first_run("cycle", "R3/2030-01-01T00:00:00Z/P1D", now=T0) == (
        datetime(2030, 1, 1, tzinfo=timezone.utc), 3)
    # A run found 3.5 intervals late uses up the three occurrences it missed too.
    assert engine_timers.schedule_after_run("R5/PT1H", due=T0, remaining=5, now=T0 + timedelta(hours=3.5)) == (
        T0 + timedelta(hours=4), 1)


# --- R7: a timer due while the sweeper was stopped fires once, even with two sweepers ------


@pytest.mark.django_db(transaction=True)
def test_r7_overdue_boundary_timer_fires_exactly_once_with_two_sweepers():
    upload(TIMERS / "sla_escalation.bpmn")
    with time_machine.travel(T0, tick=True):
        instances = [services.instance_start(process_key="sla_escalation") for _ in range(5)]
    # The sweeper was stopped for three days: every SLA is long overdue when two sweepers start.
    with time_machine.travel(T0 + timedelta(hours=72), tick=True):
        barrier = threading.Barrier(2)

        def sweeper() -> int | str:
            try:
                barrier.wait(timeout=30)
                return timers_fire_due()
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                return repr(exc)
            finally:
                connections.close_all()

        with ThreadPoolExecutor(max_workers=2) as pool:
            results = [f.result() for f in [pool.submit(sweeper) for _ in range(2)]]

    assert all(isinstance(r, int) for r in results) and sum(results) == 5, results  # each timer once in all
    for instance in instances:
        assert AuditEvent.objects.filter(instance=instance, command="timer_fired").count() == 1
        assert HumanTask.objects.filter(instance=instance, element_id="escalate").count() == 1
        assert HumanTask.objects.get(instance=instance, element_id="approve").status == HumanTaskStatus.CANCELLED
        assert fresh(instance).next_timer_at is None


# --- schedules: timer start events ---------------------------------------------------------


def scheduled(process_key: str) -> list[ProcessInstance]:
    return list(ProcessInstance.objects.filter(definition__process_key=process_key).order_by("pk"))


@pytest.mark.django_db
def test_cycle_start_event_r2_starts_exactly_two_instances_over_three_hours(clock):
    (definition,) = upload(TIMERS / "scheduled_report.bpmn")
    schedule = Schedule.objects.get(definition=definition)
    assert (schedule.element_id, schedule.kind, schedule.expression) == ("timer_start", "cycle", "R2/PT1H")
    assert (schedule.next_run_at, schedule.remaining, schedule.active) == (T0 + timedelta(hours=1), 2, True)

    started = 0
    for minutes in range(10, 190, 10):
        at(clock, minutes=minutes)
        started += sweep(nudge_due=False).schedules_started

    instances = scheduled("scheduled_report")
    assert started == 2 and len(instances) == 2
    for instance in instances:
        # Started by the schedule, the instance does not wait again on its own start timer.
        assert instance.status == InstanceStatus.WAITING and instance.next_timer_at is None
        assert open_elements(instance) == ["report"]
        assert commands(instance) == ["instance_start", "timer_fired"]
        fired = AuditEvent.objects.get(instance=instance, command="timer_fired")
        assert fired.element_id == "timer_start" and fired.payload == {"schedule": schedule.pk}
    assert [i.started_at for i in instances] == [T0 + timedelta(minutes=60), T0 + timedelta(minutes=120)]
    schedule.refresh_from_db()
    assert (schedule.active, schedule.remaining, schedule.next_run_at) == (False, 0, None)


@pytest.mark.django_db
def test_a_new_version_deactivates_the_old_schedule(clock):
    (v1,) = upload(TIMERS / "scheduled_report.bpmn")
    at(clock, minutes=5)
    (v2,) = upload(TIMERS / "v2" / "scheduled_report.bpmn")  # plain R/P1D: quoted by the upload pipeline
    assert (v1.process_key, v1.version, v2.version) == ("scheduled_report", 1, 2)

    assert Schedule.objects.get(definition=v1).active is False
    new = Schedule.objects.get(definition=v2)
    assert (new.active, new.expression, new.remaining) == (True, "R/P1D", None)
    assert new.next_run_at == T0 + timedelta(minutes=5, days=1)

    at(clock, hours=3)
    assert sweep(nudge_due=False).schedules_started == 0
    at(clock, days=1, minutes=6)
    assert sweep(nudge_due=False).schedules_started == 1
    (instance,) = scheduled("scheduled_report")
    assert instance.definition_id == v2.pk and open_elements(instance) == ["report"]
    new.refresh_from_db()
    assert new.active and new.next_run_at == T0 + timedelta(minutes=5, days=2)


@pytest.mark.django_db
def test_duration_and_date_start_events_run_once(clock):
    upload(TIMERS / "scheduled_once.bpmn")
    upload(TIMERS / "scheduled_date.bpmn")
    once = Schedule.objects.get(definition__process_key="scheduled_once")
    on_date = Schedule.objects.get(definition__process_key="scheduled_date")
    assert (once.kind, once.next_run_at) == ("duration", T0 + timedelta(minutes=30))
    assert (on_date.kind, on_date.next_run_at) == ("date", datetime(2030, 1, 1, 9, 0, tzinfo=timezone.utc))

    at(clock, minutes=29)
    assert sweep(nudge_due=False).schedules_started == 0
    at(clock, minutes=31)
    assert sweep(nudge_due=False).schedules_started == 1
    at(clock, hours=5)
    assert sweep(nudge_due=False).schedules_started == 0
    assert len(scheduled("scheduled_once")) == 1 and scheduled("scheduled_date") == []

    clock.move_to(datetime(2030, 1, 1, 9, 0, 1, tzinfo=timezone.utc))
    assert sweep(nudge_due=False).schedules_started == 1
    (instance,) = scheduled("scheduled_date")
    assert open_elements(instance) == ["report"] and instance.next_timer_at is None
    assert Schedule.objects.filter(active=True).count() == 0


@pytest.mark.django_db
def test_missed_cycle_runs_are_coalesced_into_one_start(clock):
    upload(TIMERS / "scheduled_report.bpmn")
    at(clock, hours=2, minutes=30)  # both runs (T0+1h, T0+2h) fell while no sweeper ran
    assert schedules_run_due() == 1
    assert schedules_run_due() == 0
    schedule = Schedule.objects.get()
    assert (schedule.active, schedule.remaining) == (False, 0)


@pytest.mark.django_db
def test_a_start_timer_that_needs_instance_data_refuses_the_upload(clock):
    xml = (TIMERS / "scheduled_once.bpmn").read_text().replace('"PT30M"', "delay")
    with pytest.raises(DiagramRejected) as refused:
        definition_upload(files=[("needs_data.bpmn", xml.encode())], uploaded_by=None)
    assert refused.value.details[0]["element_id"] == "timer_start"
    assert not ProcessDefinition.objects.filter(process_key="scheduled_once").exists()


@pytest.mark.django_db(transaction=True)
def test_two_sweepers_start_a_due_scheduled_instance_once():
    with time_machine.travel(T0, tick=True):
        upload(TIMERS / "scheduled_once.bpmn")
    with time_machine.travel(T0 + timedelta(hours=1), tick=True):
        barrier = threading.Barrier(2)

        def sweeper() -> int | str:
            try:
                barrier.wait(timeout=30)
                return schedules_run_due()
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                return repr(exc)
            finally:
                connections.close_all()

        with ThreadPoolExecutor(max_workers=2) as pool:
            results = [f.result() for f in [pool.submit(sweeper) for _ in range(2)]]

    assert sorted(results) == [0, 1], results
    (instance,) = scheduled("scheduled_once")
    assert open_elements(instance) == ["report"]
