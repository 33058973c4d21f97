"""Audit trail: hash chaining, the definitions chain, and L1/L2 of RELIABILITY.md.

Instances are made directly (no engine): an audit chain needs only the row.
Tampering tests commit their rows (transactional) and lift the append-only
guard the way an attacker with the owner's rights would: on SQLite by dropping
the triggers, on PostgreSQL through the owner's connection.
"""
from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bpmn.models import ProcessDefinition
from bpmn.signals import definition_published
from processes import audit
from processes.audit import (
    AuditBreak, AuditEntry, AuditHead, audit_append, audit_event_hash, audit_events_build, audit_heads,
    audit_heads_check, audit_verify, audit_verify_report,
)
from processes.models import AuditChain, AuditEvent, ProcessInstance

from ..conftest import audit_guard_sql

ROOT = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=dt.timezone.utc)
on_postgres = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL feature")


def make_instance(key: str = "audit_test") -> ProcessInstance:
    """Make a definition row and an instance directly: enough for an audit chain."""
    definition, _ = ProcessDefinition.objects.get_or_create(
        process_key=key, version=1, defaults={"content_hash": f"hash-{key}", "bpmn_xml": "<definitions/>",
                                              "spec_bundle": "{}"})
    return ProcessInstance.objects.create(definition=definition, state=b"", serializer_version="test")


def record(instance: ProcessInstance, *entries: AuditEntry, actor: Any = None,
           now: dt.datetime | None = None) -> list[AuditEvent]:
    """Append like a service: lock the row, build, save the head, bulk-create in one transaction."""
    with transaction.atomic():
        locked = ProcessInstance.objects.select_for_update().get(pk=instance.pk)
        events = audit_events_build(instance=locked, actor=actor, entries=list(entries), now=now or NOW)
        locked.save(update_fields=["audit_seq", "audit_head"])
        AuditEvent.objects.bulk_create(events)
    instance.refresh_from_db()
    return events


def chain_of(n: int, key: str = "audit_test") -> ProcessInstance:
    instance = make_instance(key)
    record(instance, *[AuditEntry(f"step_{i}", payload={"i": i}) for i in range(1, n + 1)])
    return instance


# --- hash chaining -------------------------------------------------------------


@pytest.mark.django_db
def test_events_chain_from_an_empty_hash_and_move_the_instance_head(django_user_model):
    instance, actor = make_instance(), django_user_model.objects.create_user("ann")
    task = uuid.uuid4()
    events = audit_events_build(instance=instance, actor=actor, now=NOW, entries=[
        AuditEntry("instance_start"), AuditEntry("task_complete", task_id=task, element_id="review"),
    ])
    assert [e.seq for e in events] == [1, 2]
    assert {e.chain for e in events} == {f"instance:{instance.pk}"}
    assert events[0].prev_hash == "" and events[1].prev_hash == events[0].hash
    assert (instance.audit_seq, instance.audit_head) == (2, events[1].hash)
    assert all(e.pk is None for e in events)
    assert events[1].actor_id == actor.pk and events[1].actor_name == "ann" and events[1].task_id == task


@pytest.mark.django_db
def test_hash_is_sha256_of_prev_hash_and_canonical_json(django_user_model):
    instance, actor = make_instance(), django_user_model.objects.create_user("zoë")
    task = uuid.UUID("12345678-1234-5678-1234-567812345678")
    paris = dt.timezone(dt.timedelta(hours=1))
    first, second = audit_events_build(instance=instance, actor=actor, now=NOW.astimezone(paris), entries=[
        AuditEntry("a"), AuditEntry("decide", task_id=task, element_id="approve",
                                    payload={"reason": "ok ✓", "b": [1, 2.5], "a": None}),
    ])
    fields = {"chain": f"instance:{instance.pk}", "seq": 2, "instance_id": instance.pk, "actor_id": actor.pk,
              "actor_name": "zoë", "command": "decide", "task_id": str(task), "element_id": "approve",
              "payload": {"a": None, "b": [1, 2.5], "reason": "ok ✓"},
              "created_at": "2026-03-01T12:30:15.123456+00:00"}
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert second.hash == hashlib.sha256((first.hash + text).encode()).hexdigest()
    assert audit_event_hash(second) == second.hash


@pytest.mark.django_db
@pytest.mark.parametrize("change", [
    {"command": "x"}, {"seq": 9}, {"chain": "instance:0"}, {"element_id": "x"}, {"actor_name": "x"},
    {"payload": {"i": 2}}, {"task_id": uuid.uuid4()}, {"created_at": NOW + dt.timedelta(microseconds=1)},
    {"prev_hash": "0" * 64}, {"instance_id": None}, {"actor_id": 42},
])
def test_every_field_is_covered_by_the_hash(change):
    event = audit_events_build(instance=make_instance(), actor=None, now=NOW,
                               entries=[AuditEntry("a", payload={"i": 1})])[0]
    for name, value in change.items():
        setattr(event, name, value)
    assert audit_event_hash(event) != event.hash


@pytest.mark.django_db
def test_building_makes_no_query_and_empty_entries_change_nothing(django_assert_num_queries):
    instance = make_instance()
    with django_assert_num_queries(0):
        assert audit_events_build(instance=instance, actor=None, entries=[], now=NOW) == []
        audit_events_build(instance=instance, actor=None, entries=[AuditEntry("a")] * 3, now=NOW)
    assert instance.audit_seq == 3


@pytest.mark.django_db
def test_stored_events_verify_after_a_database_round_trip():
    """Awkward payloads come back from jsonb/SQLite equal to what was hashed."""
    payload = {
        "big": 1e20, "bigger": 1e23, "neg_zero": -0.0, "small": 1.5e-7, "tenth": 0.1, "int": 2**70,
        "text": "naïve — ✓ \"q\"", 3: "int key", "nested": {"z": [1, {"y": (2, 3)}], "a": True},
        "when": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
        "day": dt.date(2026, 1, 2), "id": uuid.UUID(int=7), "amount": decimal.Decimal("10.50"),
    }
    instance = make_instance()
    record(instance, AuditEntry("a", payload=payload), AuditEntry("b", task_id=uuid.uuid4()),
           now=dt.datetime(2026, 5, 1, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=9))))
    stored = AuditEvent.objects.get(chain=f"instance:{instance.pk}", seq=1)
    assert stored.payload["big"] == 10**20 and stored.payload["3"] == "int key"
    assert stored.payload["when"] == "2026-01-02T08:04:05+00:00"
    assert all(audit_event_hash(e) == e.hash for e in AuditEvent.objects.all())
    assert audit_verify() == []


@pytest.mark.django_db
def test_nan_is_refused():
    with pytest.raises(ValueError):
        audit_events_build(instance=make_instance(), actor=None, now=NOW,
                           entries=[AuditEntry("a", payload={"x": float("nan")})])


# --- named chains and the definitions signal --------------------------------------


@pytest.mark.django_db
def test_named_chain_creates_its_head_and_appends_in_three_statements(django_assert_num_queries):
    first = audit_append(chain="ops", actor=None, entry=AuditEntry("maintenance"))
    assert (first.seq, first.prev_hash, first.instance_id) == (1, "", None)
    savepoints = 2 if connection.in_atomic_block else 0  # nested atomic inside the test transaction
    with django_assert_num_queries(3 + savepoints):
        second = audit_append(chain="ops", actor=None, entry=AuditEntry("maintenance", payload={"n": 2}))
    head = AuditChain.objects.get(key="ops")
    assert (second.seq, second.prev_hash, head.seq, head.head) == (2, first.hash, 2, second.hash)
    assert audit_verify(chain="ops") == []
    with pytest.raises(ValueError):
        audit_append(chain="instance:1", actor=None, entry=AuditEntry("forged"))


@pytest.mark.django_db
def test_publishing_definitions_appends_to_the_definitions_chain(django_user_model):
    admin = django_user_model.objects.create_user("designer")
    defs = [ProcessDefinition.objects.create(process_key=k, version=v, content_hash=f"h{k}{v}",
                                             bpmn_xml="<x/>", spec_bundle="{}") for k, v in (("a", 1), ("b", 3))]
    definition_published.send(sender=None, definitions=defs, actor=admin)
    definition_published.send(sender=None, definitions=defs[:1], actor=None)
    events = list(AuditEvent.objects.filter(chain="definitions").order_by("seq"))
    assert [e.command for e in events] == ["definition_published"] * 3
    assert events[1].payload == {"process_key": "b", "version": 3, "content_hash": "hb3"}
    assert (events[0].actor_id, events[2].actor_id) == (admin.pk, None)
    assert AuditChain.objects.get(key="definitions").seq == 3
    assert audit_verify() == []


# --- chains do not share a lock ------------------------------------------------------


@pytest.mark.django_db
def test_appending_to_one_instance_touches_no_other_row():
    a, b = make_instance(), make_instance()
    record(b, AuditEntry("b1"))
    b_before = ProcessInstance.objects.values("audit_seq", "audit_head", "updated_at").get(pk=b.pk)
    with CaptureQueriesContext(connection) as queries:
        record(a, AuditEntry("a1"), AuditEntry("a2"))
    sql = [q["sql"] for q in queries.captured_queries]
    assert not any("auditchain" in s.lower() for s in sql), sql
    ids = {int(m) for s in sql if "processes_processinstance" in s
           for m in re.findall(r'"processes_processinstance"\."id" = (\d+)', s)}
    assert ids == {a.pk}, sql
    assert ProcessInstance.objects.values("audit_seq", "audit_head", "updated_at").get(pk=b.pk) == b_before
    assert not AuditChain.objects.exists()


@on_postgres
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_locked_instance_never_blocks_another_instances_audit():
    """Thread 1 holds A's lock mid-command; thread 2 completes a command on B meanwhile."""
    a, b = make_instance(), make_instance()
    a_locked, b_done, results = threading.Event(), threading.Event(), {}

    def on_a() -> None:
        try:
            with transaction.atomic():
                locked = ProcessInstance.objects.select_for_update().get(pk=a.pk)
                a_locked.set()
                results["b_done_while_a_locked"] = b_done.wait(timeout=10)
                events = audit_events_build(instance=locked, actor=None, entries=[AuditEntry("a")], now=NOW)
                locked.save(update_fields=["audit_seq", "audit_head"])
                AuditEvent.objects.bulk_create(events)
        finally:
            connections.close_all()

    def on_b() -> None:
        try:
            assert a_locked.wait(timeout=10)
            with connection.cursor() as cursor:
                cursor.execute("SET lock_timeout = '2s'")
            record(b, AuditEntry("b"))
            b_done.set()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=on_a), threading.Thread(target=on_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == {"b_done_while_a_locked": True}
    assert AuditEvent.objects.count() == 2 and audit_verify() == []


# --- L1: the database refuses changes to audit events ------------------------------------


def _refused(sql: str, params: list | None = None) -> str:
    with pytest.raises(DatabaseError) as info, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
    return str(info.value)


@pytest.mark.django_db
def test_guard_refuses_update_and_delete_through_the_application_connection():
    chain_of(2)
    for sql in ("UPDATE processes_auditevent SET command = 'x'", "DELETE FROM processes_auditevent"):
        assert re.search("append-only|permission denied", _refused(sql)), sql
    assert AuditEvent.objects.count() == 2


@on_postgres
@pytest.mark.postgres
@pytest.mark.django_db
def test_l1_application_role_may_insert_but_never_update_delete_or_truncate():
    if not settings.DATABASE_OWNER_URL:
        pytest.skip("L1 needs the application role split from the owner (DATABASE_OWNER_URL)")
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolsuper, pg_has_role(current_user, tableowner, 'USAGE') FROM pg_roles, pg_tables"
                       " WHERE rolname = current_user AND tablename = 'processes_auditevent'")
        assert cursor.fetchone() == (False, False), "the application role must be neither superuser nor owner"
    chain_of(3)  # INSERT works
    for sql in ("UPDATE processes_auditevent SET command = 'x' WHERE seq = 2",
                "DELETE FROM processes_auditevent WHERE seq = 3", "TRUNCATE processes_auditevent"):
        assert "permission denied" in _refused(sql), sql
    assert "permission denied" in _refused("SET session_replication_role = replica")
    assert AuditEvent.objects.count() == 3 and audit_verify() == []


@on_postgres
@pytest.mark.postgres
@pytest.mark.parametrize("statement", ["UPDATE processes_auditevent SET command = 'x'",
                                       "DELETE FROM processes_auditevent", "TRUNCATE processes_auditevent"])
def test_l1_trigger_refuses_even_the_owner(pg_owner_connection, statement):
    """The owner has every privilege, yet the trigger refuses: rolled back, nothing kept."""
    with pytest.raises(Exception, match="append-only"), pg_owner_connection.transaction():
        if not statement.startswith("TRUNCATE"):  # TRUNCATE refuses pending FK trigger events first
            pg_owner_connection.execute(
                "INSERT INTO processes_auditevent (chain, seq, actor_name, command, element_id, payload,"
                " created_at, prev_hash, hash) VALUES ('owner-test', 1, '', 'c', '', '{}', now(), '', 'h')")
        pg_owner_connection.execute(statement)


# --- L2: tampering is reported at the first broken link -------------------------------------


@pytest.fixture
def tamper(request) -> Callable[..., None]:
    """Return ``tamper(sql, params)``: run SQL on committed rows with the append-only guard lifted."""
    guard = audit_guard_sql()
    if connection.vendor == "postgresql":
        owner = request.getfixturevalue("pg_owner_connection")

        def run(sql: str, params: list | None = None) -> None:
            with owner.transaction():
                for s in [*guard.PG_DISABLE, sql, *guard.PG_ENABLE]:
                    owner.execute(s, params if s is sql else None)
        return run

    def run(sql: str, params: list | None = None) -> None:
        with connection.cursor() as cursor:
            for s in guard.SQLITE_DROP:
                cursor.execute(s)
            try:
                cursor.execute(sql, params)
            finally:
                for s in guard.SQLITE_CREATE:
                    cursor.execute(s)
    return run


def _verify_command(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("verify_audit", *args, stdout=out, stderr=out)
    except CommandError as exc:
        return exc.returncode, out.getvalue()
    return 0, out.getvalue()


def _expect_break(chain: str, seq: int, reason: str) -> None:
    breaks = audit_verify()
    assert [(b.chain, b.seq) for b in breaks] == [(chain, seq)], breaks
    assert reason in breaks[0].reason
    code, out = _verify_command()
    assert code == 1 and f"BROKEN {chain} seq {seq}:" in out, out


committed = pytest.mark.django_db(transaction=True)
UPDATE_PAYLOAD = "UPDATE processes_auditevent SET payload = %s WHERE chain = %s AND seq = %s"


@committed
def test_l2_clean_trail_verifies_with_exit_code_zero():
    chain_of(3)
    chain_of(2)
    audit_append(chain="definitions", actor=None, entry=AuditEntry("definition_published"))
    assert audit_verify() == []
    assert _verify_command() == (0, "3 chains verified (6 events)\n")


@committed
def test_l2_edited_row(tamper):
    a, b = chain_of(5), chain_of(5)
    tamper(UPDATE_PAYLOAD, ['{"i": 99}', f"instance:{a.pk}", 3])
    _expect_break(f"instance:{a.pk}", 3, "hash does not match")
    assert audit_verify(chain=f"instance:{b.pk}") == []


@committed
def test_l2_deleted_row(tamper):
    a = chain_of(5)
    chain_of(2)
    tamper("DELETE FROM processes_auditevent WHERE chain = %s AND seq = 3", [f"instance:{a.pk}"])
    _expect_break(f"instance:{a.pk}", 3, "event 3 is missing")


@committed
def test_l2_swapped_rows(tamper):
    a = chain_of(5)
    key = f"instance:{a.pk}"
    for src, dst in ((2, 1000), (4, 2), (1000, 4)):
        tamper("UPDATE processes_auditevent SET seq = %s WHERE chain = %s AND seq = %s", [dst, key, src])
    _expect_break(key, 2, "does not link")


@committed
def test_l2_swapped_contents_with_hashes_kept(tamper):
    a = chain_of(4)
    key = f"instance:{a.pk}"
    for seq, other in ((2, 3), (3, 2)):
        tamper("UPDATE processes_auditevent SET command = %s, payload = %s WHERE chain = %s AND seq = %s",
               [f"step_{other}", json.dumps({"i": other}), key, seq])
    _expect_break(key, 2, "hash does not match")


@committed
def test_l2_deleted_newest_rows_are_caught_by_the_head(tamper):
    a = chain_of(5)
    tamper("DELETE FROM processes_auditevent WHERE chain = %s AND seq >= 4", [f"instance:{a.pk}"])
    _expect_break(f"instance:{a.pk}", 4, "the head records 5 events")


@committed
def test_l2_deleted_newest_row_of_a_named_chain(tamper):
    for i in range(3):
        audit_append(chain="definitions", actor=None, entry=AuditEntry("definition_published", payload={"i": i}))
    tamper("DELETE FROM processes_auditevent WHERE chain = 'definitions' AND seq = 3")
    _expect_break("definitions", 3, "the head records 3 events")


@committed
def test_l2_every_event_of_a_chain_deleted(tamper):
    a = chain_of(2)
    tamper("DELETE FROM processes_auditevent WHERE chain = %s", [f"instance:{a.pk}"])
    _expect_break(f"instance:{a.pk}", 1, "all 2 events")


@committed
def test_l2_consistent_rewrite_is_caught_by_the_head_then_by_exported_heads(tamper):
    a = chain_of(3)
    key = f"instance:{a.pk}"
    exported = list(audit_heads())
    assert exported == [AuditHead(key, 3, a.audit_head)]
    events = list(AuditEvent.objects.filter(chain=key).order_by("seq"))
    events[1].payload, prev = {"i": 42}, events[0].hash
    for event in events[1:]:  # recompute every later hash, as an attacker would
        event.prev_hash = prev
        event.hash = prev = audit_event_hash(event)
        tamper("UPDATE processes_auditevent SET payload = %s, prev_hash = %s, hash = %s WHERE id = %s",
               [json.dumps(event.payload), event.prev_hash, event.hash, event.pk])
    _expect_break(key, 3, "does not match the recorded head")
    ProcessInstance.objects.filter(pk=a.pk).update(audit_head=prev)  # the app role can move the head
    assert audit_verify() == []
    assert audit_heads_check(exported) == [AuditBreak(key, 3, "exported head has another hash")]


@committed
def test_l2_export_and_check_heads_through_the_command(tmp_path):
    chain_of(2)
    heads = tmp_path / "heads.jsonl"
    assert _verify_command("--export-heads", str(heads))[0] == 0
    assert len(heads.read_text().splitlines()) == 1
    assert _verify_command("--check-heads", str(heads))[0] == 0
    heads.write_text(heads.read_text().replace('"seq": 2', '"seq": 7'))
    code, out = _verify_command("--check-heads", str(heads))
    assert code == 1 and "exported head is missing" in out


@committed
def test_l2_streaming_in_small_batches_and_catching_up_with_new_commits(monkeypatch):
    instances = [chain_of(3) for _ in range(5)]
    monkeypatch.setattr(audit, "_BATCH", 2)
    original, grown = audit._heads, []

    def heads_after_a_commit(chains: list[str]) -> dict:
        if not grown:  # a command commits while the verifier streams: the head runs ahead
            grown.append(record(instances[0], AuditEntry("late")))
        return original(chains)

    monkeypatch.setattr(audit, "_heads", heads_after_a_commit)
    report = audit_verify_report(chunk_size=2)
    assert (report.chains, report.breaks) == (5, [])


@committed
def test_l2_manage_py_verify_audit_exit_codes(tamper):
    a = chain_of(3)
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        url = f"sqlite:///{db['NAME']}"
    else:
        password = f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else ""
        url = f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env = {**os.environ, "DATABASE_URL": url}

    def run() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "manage.py", "verify_audit"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)

    ok = run()
    assert ok.returncode == 0 and "1 chains verified" in ok.stdout, ok.stderr
    tamper(UPDATE_PAYLOAD, ['{"i": 0}', f"instance:{a.pk}", 2])
    broken = run()
    assert broken.returncode == 1 and f"BROKEN instance:{a.pk} seq 2:" in broken.stdout, broken.stderr
