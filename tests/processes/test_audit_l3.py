"""L3 of RELIABILITY.md: random command sequences, some forced to roll back.

Each step picks a command (start, complete, suspend, resume, cancel) on a
random instance and one of four fates: commit; refused by a registered check
(before anything is written); failing inside the command after the state was
saved (the audit INSERT raises); committed by the service but rolled back by
the caller's outer transaction. Afterwards the audit events equal the committed
commands one to one, in order, per instance, and every chain verifies.
"""
from __future__ import annotations

import os
import random
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest
from django.db import transaction

from core.errors import BatonError, Conflict
from processes import hooks, services
from processes.audit import audit_verify
from processes.models import AuditEvent, HumanTaskStatus, InstanceStatus, ProcessInstance

from .conftest import ENGINE

pytestmark = pytest.mark.django_db
STEPS = int(os.environ.get("BATON_L3_STEPS", "40"))
# Events a command adds besides its own (derived, not commands).
DERIVED = {"instance_complete", "incident_open"}


class Refused(BatonError):
    code = "refused_by_test"


class OuterRollback(Exception):
    pass


def _snapshot(instance_id: int) -> tuple:
    return tuple(ProcessInstance.objects.filter(pk=instance_id).values_list(
        "status", "version", "audit_seq", "audit_head").first() or ())


def _choose(rng: random.Random, alice: Any, live: list[int]) -> tuple[str, int | None, Callable[[], Any]]:
    """Pick a command that makes sense now (or, sometimes, one that must conflict)."""
    ended = (InstanceStatus.COMPLETED, InstanceStatus.CANCELLED)
    active = list(ProcessInstance.objects.filter(pk__in=live).exclude(status__in=ended).values_list("pk", flat=True))
    pool = live if rng.random() < 0.1 else active  # now and then a command on an ended instance: a conflict
    if not pool or rng.random() < 0.2:
        return "instance_start", None, lambda: services.instance_start(process_key="single_user_task", actor=alice)
    pk = rng.choice(pool)
    status = ProcessInstance.objects.values_list("status", flat=True).get(pk=pk)
    task = ProcessInstance.objects.get(pk=pk).human_tasks.filter(status=HumanTaskStatus.OPEN).first()
    options: list[tuple[str, Callable[[], Any]]] = [
        ("instance_cancel", lambda: services.instance_cancel(instance_id=pk, actor=alice, reason="l3")),
    ]
    if status == InstanceStatus.SUSPENDED:
        options.append(("instance_resume", lambda: services.instance_resume(instance_id=pk, actor=alice)))
    else:
        options.append(("instance_suspend", lambda: services.instance_suspend(instance_id=pk, actor=alice)))
    if task is not None:
        options += [("task_complete", lambda: services.task_complete(human_task_id=task.pk, actor=alice,
                                                                     data={"n": rng.random()}, decision="ok"))] * 2
    name, call = rng.choice(options)
    return name, pk, call


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_l3_audit_events_match_committed_commands_one_to_one(seed, deploy, alice, monkeypatch):
    deploy(ENGINE / "single_user_task.bpmn")
    rng, live, committed = random.Random(seed), [], defaultdict(list)
    fate = {"value": "commit"}

    def refuse(command: hooks.Command) -> None:
        if fate["value"] == "refused":
            raise Refused("refused by the L3 test")

    real_bulk_create = AuditEvent.objects.bulk_create

    def failing_bulk_create(objs: list, *args: Any, **kwargs: Any) -> list:
        if fate["value"] == "audit_insert_fails":
            raise RuntimeError("audit INSERT failed")
        return real_bulk_create(objs, *args, **kwargs)

    hooks.register_check(refuse)
    monkeypatch.setattr(AuditEvent.objects, "bulk_create", failing_bulk_create)
    try:
        fates = {"commit": 0, "refused": 0, "audit_insert_fails": 0, "outer_rollback": 0, "conflict": 0}
        for _ in range(STEPS):
            name, pk, call = _choose(rng, alice, live)
            fate["value"] = rng.choice(["commit", "commit", "refused", "audit_insert_fails", "outer_rollback"])
            before = _snapshot(pk) if pk else None
            try:
                with transaction.atomic():
                    result = call()
                    if fate["value"] == "outer_rollback":
                        raise OuterRollback
            except (OuterRollback, Refused, RuntimeError):
                fates[fate["value"]] += 1
                assert pk is None or _snapshot(pk) == before, (name, fate)
                continue
            except Conflict:  # e.g. cancelling a completed instance: nothing written either
                fates["conflict"] += 1
                assert pk is None or _snapshot(pk) == before, name
                continue
            assert fate["value"] == "commit", (name, fate)
            fates["commit"] += 1
            pk = pk or result.pk
            if name == "instance_start":
                live.append(pk)
            committed[pk].append(name)
    finally:
        hooks.unregister_check(refuse)

    assert fates["commit"] and fates["outer_rollback"] and fates["audit_insert_fails"], fates
    recorded: dict[int, list[str]] = defaultdict(list)
    rows = AuditEvent.objects.filter(instance__isnull=False).order_by("instance_id", "seq")
    for instance_id, command in rows.values_list("instance_id", "command"):
        if command not in DERIVED:
            recorded[instance_id].append(command)
    assert dict(recorded) == dict(committed)
    for instance in ProcessInstance.objects.all():
        assert instance.audit_seq == AuditEvent.objects.filter(instance=instance).count()
    assert audit_verify() == []
