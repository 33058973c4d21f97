"""Append-only, hash-chained audit trail: build, append and verify events.

Every event carries ``hash = sha256(prev_hash + canonical_json(fields))`` where
``fields`` are (chain, seq, instance_id, actor_id, actor_name, command, task_id,
element_id, payload, created_at) and ``prev_hash`` of a chain's first event is
``""``. Chains are per instance (``instance:<pk>``, head kept on
``ProcessInstance.audit_seq/audit_head``) or named (``definitions``, head kept
on ``AuditChain``), so unrelated instances never wait on one lock and deleting
a chain's newest events is still detected. See docs/audit.md.
"""
from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import math
import uuid
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, connection, transaction
from django.db.models import CharField, Exists, OuterRef, Q, Value
from django.db.models.functions import Cast, Concat
from django.utils import timezone

from .models import AuditChain, AuditEvent, ProcessInstance

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from bpmn.models import ProcessDefinition

DEFINITIONS_CHAIN = "definitions"
INSTANCE_PREFIX = "instance:"
_ROW_FIELDS = ("chain", "seq", "instance_id", "actor_id", "actor_name", "command",
               "task_id", "element_id", "payload", "created_at", "prev_hash", "hash")
_HASHED = _ROW_FIELDS[:10]  # what event_hash covers besides prev_hash
_BATCH = 500


@dataclass(frozen=True)
class AuditEntry:
    """What one command wants recorded; the chain position is added by the builder."""

    command: str
    task_id: uuid.UUID | None = None
    element_id: str = ""
    payload: dict = field(default_factory=dict)  # JSON-able: data changes, decision, reason...


@dataclass(frozen=True)
class AuditBreak:
    """The first broken link of one chain: ``seq`` is the first event that cannot be trusted."""

    chain: str
    seq: int
    reason: str

    def __str__(self) -> str:
        return f"{self.chain} seq {self.seq}: {self.reason}"


@dataclass(frozen=True)
class AuditHead:
    """A chain's last sequence number and hash, as exported for safe keeping."""

    chain: str
    seq: int
    hash: str


@dataclass
class AuditReport:
    """Outcome of a verification run: chains and events read, first break per broken chain."""

    chains: int = 0
    events: int = 0
    breaks: list[AuditBreak] = field(default_factory=list)


# --- canonical form and hash -------------------------------------------------


def _utc(value: dt.datetime) -> dt.datetime:
    if timezone.is_naive(value):
        return value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


def _json_default(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return _utc(value).isoformat()
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return str(value)  # UUID, Decimal, anything else: its text


def _plain(value: Any) -> Any:
    """Return ``value`` as plain JSON that survives a PostgreSQL ``jsonb`` round trip unchanged.

    Why: the hash is computed before the row is stored and recomputed from what
    the database gives back. ``jsonb`` prints floats of 1e16 and beyond as whole
    numbers (read back as ``int``) and has no ``-0.0``, so those are normalised
    here, and the normalised value is what gets stored. NaN/Infinity are refused.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("audit payloads cannot hold NaN or infinity")
        if value == 0:
            return 0.0
        return int(decimal.Decimal(repr(value))) if abs(value) >= 1e16 else value
    if isinstance(value, dict):
        return {_key(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return _json_default(value)


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, (bool, int, float)):
        return json.dumps(key)
    return _json_default(key)


def canonical_json(value: Any) -> str:
    """Serialise ``value`` the one way the hash sees it: sorted keys, no spaces, UTF-8 text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=_json_default, allow_nan=False)


def event_hash(*, prev_hash: str, chain: str, seq: int, instance_id: int | None, actor_id: int | None,
               actor_name: str, command: str, task_id: uuid.UUID | str | None, element_id: str,
               payload: Any, created_at: dt.datetime) -> str:
    """Compute an event's SHA-256 hex digest over its predecessor's hash and its own fields."""
    fields = {
        "chain": chain, "seq": seq, "instance_id": instance_id, "actor_id": actor_id,
        "actor_name": actor_name, "command": command,
        "task_id": str(task_id) if task_id is not None else None, "element_id": element_id,
        "payload": payload, "created_at": _utc(created_at).isoformat(),
    }
    return hashlib.sha256((prev_hash + canonical_json(fields)).encode("utf-8")).hexdigest()


def audit_event_hash(event: AuditEvent) -> str:
    """Recompute the hash a stored (or built) event should carry."""
    return event_hash(prev_hash=event.prev_hash, **{f: getattr(event, f) for f in _HASHED})


def instance_chain(instance_id: int) -> str:
    """Return the chain key of an instance."""
    return f"{INSTANCE_PREFIX}{instance_id}"


def _chain_instance_id(chain: str) -> int | None:
    rest = chain[len(INSTANCE_PREFIX):] if chain.startswith(INSTANCE_PREFIX) else ""
    return int(rest) if rest.isdigit() else None


def _actor(actor: User | None) -> tuple[int | None, str]:
    if actor is None or getattr(actor, "pk", None) is None:
        return None, ""
    return actor.pk, actor.get_username()[:150]


def _chain_events(*, chain: str, instance_id: int | None, actor: User | None, entries: Iterable[AuditEntry],
                  now: dt.datetime, seq: int, head: str) -> list[AuditEvent]:
    actor_id, actor_name = _actor(actor)
    created_at = _utc(now)
    events: list[AuditEvent] = []
    for entry in entries:
        if not entry.command or len(entry.command) > 64:
            raise ValueError(f"audit command must be 1-64 characters: {entry.command!r}")
        seq += 1
        task_id = uuid.UUID(str(entry.task_id)) if entry.task_id is not None else None
        fields = dict(chain=chain, seq=seq, instance_id=instance_id, actor_id=actor_id, actor_name=actor_name,
                      command=entry.command, task_id=task_id, element_id=entry.element_id[:255],
                      payload=_plain(dict(entry.payload)), created_at=created_at)
        event = AuditEvent(**fields, prev_hash=head)
        event.hash = head = event_hash(prev_hash=head, **fields)
        events.append(event)
    return events


# --- writing -------------------------------------------------------------------


def audit_events_build(*, instance: ProcessInstance, actor: User | None, entries: list[AuditEntry],
                       now: dt.datetime) -> list[AuditEvent]:
    """Chain new events onto the instance's chain; mutate instance.audit_seq/audit_head; return UNSAVED events.

    The caller holds the instance row lock, saves the instance and bulk_creates
    the events in the same transaction (one INSERT). No query is made here, and
    only this instance's in-memory head is read, so commands on different
    instances never contend. Payloads are normalised (see ``_plain``) and the
    normalised value is what the events store.
    """
    if instance.pk is None:
        raise ValueError("save the instance before building its audit events")
    events = _chain_events(chain=instance_chain(instance.pk), instance_id=instance.pk, actor=actor,
                           entries=entries, now=now, seq=instance.audit_seq, head=instance.audit_head)
    if events:
        instance.audit_seq, instance.audit_head = events[-1].seq, events[-1].hash
    return events


def _lock_chain(key: str) -> AuditChain:
    head = AuditChain.objects.select_for_update().filter(key=key).first()
    if head is None:
        try:
            with transaction.atomic():
                AuditChain.objects.create(key=key)
        except IntegrityError:  # created concurrently: lock the winner's row below
            pass
        head = AuditChain.objects.select_for_update().get(key=key)
    return head


def audit_append_many(*, chain: str, actor: User | None, entries: list[AuditEntry],
                      now: dt.datetime | None = None) -> list[AuditEvent]:
    """Append several events to a named chain under one lock of its ``AuditChain`` row.

    Costs three statements (lock, one INSERT, head UPDATE) however many entries;
    runs inside the caller's transaction when there is one.
    """
    if chain.startswith(INSTANCE_PREFIX) or not chain or len(chain) > 64:
        raise ValueError(f"not a named audit chain: {chain!r}")
    with transaction.atomic():
        head = _lock_chain(chain)
        events = _chain_events(chain=chain, instance_id=None, actor=actor, entries=entries,
                               now=now or timezone.now(), seq=head.seq, head=head.head)
        if events:
            AuditEvent.objects.bulk_create(events)
            AuditChain.objects.filter(pk=head.pk).update(seq=events[-1].seq, head=events[-1].hash)
    return events


def audit_append(*, chain: str, actor: User | None, entry: AuditEntry, now: dt.datetime | None = None) -> AuditEvent:
    """Append to a named chain of no instance (e.g. 'definitions'): lock/create the AuditChain row, save, move the head."""
    return audit_append_many(chain=chain, actor=actor, entries=[entry], now=now)[0]


def definition_published_receiver(sender: Any, *, definitions: list[ProcessDefinition], actor: User | None = None,
                                  **kwargs: Any) -> None:
    """Record each published definition on the ``definitions`` chain (one event per definition).

    Connected to ``bpmn.signals.definition_published`` in ``ProcessesConfig.ready``;
    runs inside the publisher's transaction, so the events commit with it.
    """
    entries = [AuditEntry("definition_published", payload={
        "process_key": d.process_key, "version": d.version, "content_hash": d.content_hash,
    }) for d in definitions]
    if entries:
        audit_append_many(chain=DEFINITIONS_CHAIN, actor=actor, entries=entries)


# --- verifying -------------------------------------------------------------------


class _Walk:
    """Follow one chain event by event; remember the first broken link."""

    __slots__ = ("chain", "instance_id", "seq", "hash", "broken")

    def __init__(self, chain: str) -> None:
        self.chain, self.instance_id = chain, _chain_instance_id(chain)
        self.seq, self.hash, self.broken = 0, "", None

    def feed(self, row: tuple) -> AuditBreak | None:
        if self.broken:
            return None
        fields = dict(zip(_ROW_FIELDS, row))
        seq, reason = fields["seq"], None
        if seq != self.seq + 1:
            seq, reason = self.seq + 1, f"event {self.seq + 1} is missing (next stored event is {fields['seq']})"
        elif fields["prev_hash"] != self.hash:
            reason = f"prev_hash does not link to event {self.seq}"
        elif fields["instance_id"] != self.instance_id:
            reason = f"event belongs to instance {fields['instance_id']}"
        elif event_hash(prev_hash=self.hash, **{f: fields[f] for f in _HASHED}) != fields["hash"]:
            reason = "hash does not match the event's content (edited or moved)"
        if reason:
            self.broken = AuditBreak(self.chain, seq, reason)
            return self.broken
        self.seq, self.hash = seq, fields["hash"]
        return None

    def close(self, head: tuple[int, str] | None) -> AuditBreak | None:
        """Compare the end of the walk with the recorded head (events newer than the walk are read first)."""
        if self.broken:
            return None
        if head is None:
            reason = "no recorded head for this chain" if self.instance_id is None else "the instance row is gone"
            self.broken = AuditBreak(self.chain, self.seq, reason)
        elif head[0] > self.seq:  # newer events committed since the stream began, or the newest deleted
            newer = AuditEvent.objects.filter(chain=self.chain, seq__gt=self.seq, seq__lte=head[0])
            for row in newer.order_by("seq").values_list(*_ROW_FIELDS):
                if self.feed(row):
                    return self.broken
            if self.seq < head[0]:
                self.broken = AuditBreak(self.chain, self.seq + 1,
                                         f"event {self.seq + 1} is missing: the head records {head[0]} events")
        if not self.broken and head[0] < self.seq:
            self.broken = AuditBreak(self.chain, head[0] + 1, f"event beyond the recorded head ({head[0]})")
        elif not self.broken and head[1] != self.hash:
            self.broken = AuditBreak(self.chain, self.seq, "hash does not match the recorded head")
        return self.broken


def _heads(chains: list[str]) -> dict[str, tuple[int, str]]:
    ids = {c: i for c in chains if (i := _chain_instance_id(c)) is not None}
    heads = {instance_chain(pk): (seq, head) for pk, seq, head in
             ProcessInstance.objects.filter(pk__in=ids.values()).values_list("pk", "audit_seq", "audit_head")}
    named = [c for c in chains if c not in ids]
    heads.update({k: (s, h) for k, s, h in AuditChain.objects.filter(key__in=named).values_list("key", "seq", "head")})
    return heads


def _close_walks(walks: list[_Walk], report: AuditReport) -> None:
    heads = _heads([w.chain for w in walks])
    report.breaks.extend(b for w in walks if (b := w.close(heads.get(w.chain))))
    walks.clear()


def _chains_without_events(chain: str | None) -> Iterator[tuple[str, int]]:
    no_events = ~Exists(AuditEvent.objects.filter(chain=OuterRef("key")))
    instances = (ProcessInstance.objects.filter(audit_seq__gt=0)
                 .annotate(key=Concat(Value(INSTANCE_PREFIX), Cast("pk", CharField()), output_field=CharField()))
                 .filter(no_events))
    named = AuditChain.objects.filter(seq__gt=0).filter(no_events)
    if chain is not None:
        pk = _chain_instance_id(chain)
        instances = instances.filter(pk=pk) if pk is not None else instances.none()
        named = named.filter(key=chain) if pk is None else named.none()
    yield from instances.values_list("key", "audit_seq").iterator(chunk_size=2000)
    yield from named.values_list("key", "seq").iterator(chunk_size=2000)


def audit_verify_report(*, chain: str | None = None, chunk_size: int = 2000) -> AuditReport:
    """Verify every chain (or one) against its links and recorded head; stream, never load a chain whole.

    Reads events ordered by (chain, seq) through the unique index with
    ``iterator(chunk_size)`` and keeps one small walk per chain; heads are
    looked up in batches of finished chains. A head found ahead of the stream
    (commands committed meanwhile) is caught up from the database before it is
    judged, so a live system gives no false alarms. Memory is O(batch), time
    O(events); on PostgreSQL the read runs in one transaction (no WITH HOLD copy).
    """
    report = AuditReport()
    events = AuditEvent.objects.order_by("chain", "seq")
    if chain is not None:
        events = events.filter(chain=chain)
    pending: list[_Walk] = []
    walk: _Walk | None = None
    with transaction.atomic() if connection.vendor == "postgresql" else nullcontext():
        for row in events.values_list(*_ROW_FIELDS).iterator(chunk_size=chunk_size):
            if walk is None or walk.chain != row[0]:
                walk = _Walk(row[0])
                report.chains += 1
                pending.append(walk)
                if len(pending) > _BATCH:
                    _close_walks(pending[:-1], report)
                    pending[:] = [walk]
            report.events += 1
            if brk := walk.feed(row):
                report.breaks.append(brk)
        _close_walks(pending, report)
    for key, seq in _chains_without_events(chain):
        report.chains += 1
        report.breaks.append(AuditBreak(key, 1, f"all {seq} events recorded by the head are missing"))
    return report


def audit_verify(*, chain: str | None = None) -> list[AuditBreak]:
    """Return the first broken link of every broken chain (all chains, or one); empty when all verify."""
    return audit_verify_report(chain=chain).breaks


def audit_heads() -> Iterator[AuditHead]:
    """Yield every chain's head, streaming, for export to storage the database cannot rewrite."""
    rows = ProcessInstance.objects.filter(audit_seq__gt=0).order_by("pk").values_list("pk", "audit_seq", "audit_head")
    for pk, seq, head in rows.iterator(chunk_size=2000):
        yield AuditHead(instance_chain(pk), seq, head)
    for key, seq, head in AuditChain.objects.filter(seq__gt=0).order_by("key").values_list("key", "seq", "head"):
        yield AuditHead(key, seq, head)


def audit_heads_check(heads: Iterable[AuditHead]) -> list[AuditBreak]:
    """Check exported heads still sit in their chains with the same hash.

    Chains only grow, so an exported (chain, seq, hash) must stay true for ever:
    this catches a rewrite that recomputed every hash and moved the head too,
    which no check inside the database can see.
    """
    breaks: list[AuditBreak] = []
    batch: list[AuditHead] = []

    def flush() -> None:
        where = Q()
        for h in batch:
            where |= Q(chain=h.chain, seq=h.seq)
        found = {(c, s): x for c, s, x in AuditEvent.objects.filter(where).values_list("chain", "seq", "hash")}
        for h in batch:
            if found.get((h.chain, h.seq)) != h.hash:
                what = "is missing" if (h.chain, h.seq) not in found else "has another hash"
                breaks.append(AuditBreak(h.chain, h.seq, f"exported head {what}"))
        batch.clear()

    for head in heads:
        batch.append(head)
        if len(batch) >= _BATCH:
            flush()
    if batch:
        flush()
    return breaks
