"""R1, R2, R4, R5, R8 against a real Celery worker and the real Redis (RELIABILITY.md, Resilience).

Each test starts instances through the services in this process (which
commits, then nudges the worker through Redis), lets the worker subprocess
run the jobs, breaks something on purpose and checks that every job still
ran, its side effect happened once per idempotency key, and the instance
moved on. This process plays beat: ``wait_for(..., sweep_every=...)`` sweeps.
"""
from __future__ import annotations

import re
import time
from collections import Counter

import pytest

from processes import services
from processes.models import HumanTask, HumanTaskStatus, Incident, InstanceStatus, Job, JobStatus, ProcessInstance

from .conftest import DEAD_BROKER_URL, LEASE_SECONDS, SLOW_SECONDS, SWEEP_SECONDS, Chaos, test_broker_url

pytestmark = [pytest.mark.chaos, pytest.mark.django_db(transaction=True)]


def _job(instance: ProcessInstance) -> Job:
    return Job.objects.get(instance=instance)


def _open_elements(instance: ProcessInstance) -> list[str]:
    return sorted(HumanTask.objects.filter(instance=instance, status=HumanTaskStatus.OPEN).values_list("element_id", flat=True))


def _done(job: Job) -> bool:
    return Job.objects.filter(pk=job.pk, status=JobStatus.DONE).exists()


def _assert_advanced(instance: ProcessInstance, job: Job) -> None:
    instance.refresh_from_db()
    job.refresh_from_db()
    assert job.status == JobStatus.DONE
    assert instance.status == InstanceStatus.WAITING
    assert _open_elements(instance) == ["after"]
    assert not Incident.objects.filter(instance=instance).exists()


def _finish(instance: ProcessInstance) -> None:
    """Complete the user task after the service task: the instance runs to its end."""
    task = HumanTask.objects.get(instance=instance, element_id="after", status=HumanTaskStatus.OPEN)
    services.task_complete(human_task_id=task.pk, actor=None, data={})
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.COMPLETED


def test_r1_killed_pool_child_reruns_the_job_with_one_side_effect(chaos: Chaos):
    """R1: SIGKILL the prefork child mid-connector: the message comes back, the job re-runs, one effect."""
    chaos.deploy("chaos_slow.bpmn")
    mark = chaos.worker.log_offset()
    instance = services.instance_start(process_key="chaos_slow", actor=None, data={"seconds": SLOW_SECONDS})
    job = _job(instance)
    key = job.idempotency_key

    chaos.wait_for(lambda: chaos.calls(key) == 1, timeout=20, what="the worker to call chaos.slow")
    assert Job.objects.get(pk=job.pk).status == JobStatus.RUNNING
    killed = chaos.worker.kill_child()

    chaos.wait_for(lambda: _done(job), timeout=LEASE_SECONDS + SWEEP_SECONDS + 2 * SLOW_SECONDS + 20,
                   what="the job to re-run and finish", sweep_every=SWEEP_SECONDS)

    _assert_advanced(instance, job)
    assert job.attempt == 2  # the killed attempt, then the re-run
    assert chaos.calls(key) == 2
    assert chaos.effects()[key] == 1  # the re-run found the effect done: once per idempotency key
    assert instance.data["slow"] == {"key": key, "first": False}
    _finish(instance)
    log = chaos.worker.log_since(mark)
    assert f"pid:{killed} exited with 'signal 9 (SIGKILL)'" in log
    # acks_late + reject_on_worker_lost: the killed child's message was redelivered, not lost. (The
    # redelivery arrives while the dead attempt's lease still holds, so it is skipped; the re-run
    # itself comes from the lease expiring and the sweeper nudging, as in R2.)
    received = Counter(re.findall(r"Task baton\.run_job\[([0-9a-f-]+)\] received", log))
    assert received and received.most_common(1)[0][1] >= 2, log


def test_r2_killed_worker_job_recovered_by_lease_and_sweeper(chaos: Chaos):
    """R2: SIGKILL the whole worker mid-job, start another: the lease expires, the sweeper re-nudges."""
    chaos.deploy("chaos_slow.bpmn")
    instance = services.instance_start(process_key="chaos_slow", actor=None, data={"seconds": SLOW_SECONDS})
    job = _job(instance)
    key = job.idempotency_key
    chaos.wait_for(lambda: chaos.calls(key) == 1, timeout=20, what="the worker to call chaos.slow")
    lease_expires_at = Job.objects.get(pk=job.pk).lease_expires_at
    assert lease_expires_at is not None

    chaos.worker.kill()
    chaos.worker.start()  # a new worker; the old one's message stays unacked in Redis (visibility timeout: 1 h)
    ready_at = time.time()

    reclaimed: dict[str, float] = {}

    def reclaimed_or_done() -> bool:
        current = Job.objects.get(pk=job.pk)
        if current.attempt >= 2 and "at" not in reclaimed:
            reclaimed["at"] = time.time()
        return current.status == JobStatus.DONE

    chaos.wait_for(reclaimed_or_done, timeout=LEASE_SECONDS + SWEEP_SECONDS + 2 * SLOW_SECONDS + 30,
                   what="the job to be recovered and finish", sweep_every=SWEEP_SECONDS)

    _assert_advanced(instance, job)
    assert job.attempt == 2 and chaos.calls(key) == 2 and chaos.effects()[key] == 1
    # re-run within lease + one sweep interval (+ polling and claim slack) - not after the broker's 1 h
    # visibility timeout - counted from when both the lease had expired and the new worker was up
    assert reclaimed["at"] - max(lease_expires_at.timestamp(), ready_at) <= SWEEP_SECONDS + 2.5
    commands = list(instance.audit_events.order_by("seq").values_list("command", flat=True))
    assert commands == ["instance_start", "job_retry_scheduled", "job_complete"]  # retry: the expired lease
    _finish(instance)


def test_r4_broker_down_while_50_tasks_complete_nothing_lost(chaos: Chaos):
    """R4: with the broker unreachable, 50 starts and 50 completions all succeed; the jobs run later, once."""
    chaos.deploy("chaos_effect.bpmn")
    chaos.use_broker(DEAD_BROKER_URL)
    slowest = 0.0
    instances = []
    for number in range(50):
        started = time.monotonic()
        instances.append(services.instance_start(process_key="chaos_effect", actor=None, data={"number": number}))
        slowest = max(slowest, time.monotonic() - started)
    for instance in instances:
        task = HumanTask.objects.get(instance=instance, element_id="review", status=HumanTaskStatus.OPEN)
        started = time.monotonic()
        services.task_complete(human_task_id=task.pk, actor=None, data={"ok": True})  # must not raise
        slowest = max(slowest, time.monotonic() - started)
    assert slowest < 3.0, f"a command took {slowest:.2f} s with the broker down"  # publish: 1 s timeout, no retry

    jobs = list(Job.objects.filter(instance__in=instances))
    assert len(jobs) == 50 and {j.status for j in jobs} == {JobStatus.QUEUED}
    keys = {j.idempotency_key for j in jobs}
    assert not keys & set(chaos.effects())  # nothing reached the worker

    chaos.use_broker(test_broker_url())  # the broker is back
    chaos.sweep()
    chaos.wait_for(lambda: Job.objects.filter(pk__in=[j.pk for j in jobs], status=JobStatus.DONE).count() == 50,
                   timeout=120, what="all 50 jobs to run", sweep_every=10)

    for instance in instances:
        instance.refresh_from_db()
        assert instance.status == InstanceStatus.WAITING and _open_elements(instance) == ["after"]
    effects = chaos.effects()
    assert {k: effects[k] for k in keys} == {k: 1 for k in keys}  # every job's effect, exactly once


def test_r5_crash_between_commit_and_nudge_sweeper_picks_the_job_up(chaos: Chaos, monkeypatch):
    """R5: the nudge never happens (the process 'died' after commit): the sweeper finds the job."""
    import processes.nudge

    chaos.deploy("chaos_slow.bpmn")
    monkeypatch.setattr(processes.nudge, "nudge", lambda job_ids: 0)
    instance = services.instance_start(process_key="chaos_slow", actor=None, data={"seconds": 0.1})
    job = _job(instance)
    monkeypatch.undo()  # the next process (here: the sweeper) nudges normally

    time.sleep(2 * SWEEP_SECONDS)
    assert Job.objects.get(pk=job.pk).status == JobStatus.QUEUED  # no message went out
    assert chaos.calls(job.idempotency_key) == 0

    chaos.wait_for(lambda: _done(job), timeout=30, what="the sweeper to get the job run", sweep_every=SWEEP_SECONDS)
    _assert_advanced(instance, job)
    assert job.attempt == 1 and chaos.effects()[job.idempotency_key] == 1


def test_r8_connector_error_reaches_the_incident_unwrapped(chaos: Chaos):
    """R8: a connector raising ValueError on every attempt: the incident shows that error, not a wrapper's."""
    chaos.deploy("chaos_fail.bpmn")  # <spiffworkflow:retry retries="1"/>: two attempts
    instance = services.instance_start(process_key="chaos_fail", actor=None, data={})
    job = _job(instance)
    assert job.max_attempts == 2

    chaos.wait_for(lambda: Incident.objects.filter(instance=instance).exists(), timeout=30,
                   what="the incident after the last attempt", sweep_every=SWEEP_SECONDS)

    incident = Incident.objects.get(instance=instance)
    job.refresh_from_db()
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.INCIDENT
    assert job.status == JobStatus.FAILED and job.attempt == 2 and chaos.calls(job.idempotency_key) == 2
    assert (incident.error_type, incident.message) == ("ValueError", "ledger closed")
    assert incident.element_id == "post_ledger" and incident.job_id == job.pk
    assert incident.traceback.rstrip().endswith("ValueError: ledger closed")
    assert "chaos_connectors.py" in incident.traceback  # the connector's own frame, not only the runner's
