"""N-of-M and quorum approvals: vote rows kept by Baton complete one engine wait.

A user task becomes a *vote task* when its element declares ``baton:quorum``
(a ``spiffworkflow:property`` / ``camunda:property`` or a ``baton:``
attribute; the prefix is optional, as in ``approvals.rules``):

* ``baton:quorum`` - an integer N ("N approvals needed"), ``majority``
  (more than half of the eligible voters) or ``all``;
* ``baton:voters`` - comma-separated group names; default: the task's
  candidate groups and candidate users. Named groups are added to the task's
  candidate groups when it opens, so their members see it in their inbox;
* ``baton:approveOutcome`` - the outcome that counts as an approval
  (default ``approved``, else ``approve`` if the form offers it);
* ``baton:vetoOutcome`` - default ``rejected`` (else ``reject``); one such vote
  decides at once unless ``baton:veto`` is ``false``.

The outcomes a voter may choose are the form's ``decision`` options
(``approved``/``rejected`` when the form has none).

**Eligible voters (M)** are the active members of the voter groups (plus the
named candidate users) *when the task opened*: an ``on_command_finished``
listener appends a ``vote_open`` event to the instance's audit chain with the
snapshot (``eligible`` usernames and ``eligible_ids``) and the required
count, in the command that opened the task. Later group changes do not
change M. A task opened before voting was declared has no snapshot: M is then
read from the current members (the same rule, evaluated at vote time).

**Deciding**: each vote is a ``Vote`` row and a ``task_vote`` event. The task
is decided when approvals reach N (outcome = the approve outcome), when a veto
vote is cast, or when N can no longer be reached (approvals + eligible voters
who have not voted < N; outcome = the veto outcome). The deciding vote then
completes the engine task once, through ``processes.services.task_complete``
with the deciding voter as actor: the decision record
``decisions[<element id>]`` carries ``votes`` (the tally), and the task data
gets ``votes`` too. Later votes answer ``409 task_not_open``.

A stand-in (``StandIn``) who is not an eligible voter votes for an eligible
person they stand in for (``Vote.acting_for``; the rules check both people),
which uses up that person's vote.

Vote tasks are not claimed or delegated (``409 vote_task``), and completing one
other than by voting is refused by the same engine check.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Iterator

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Q

from core.errors import Conflict, PermissionDenied, ValidationError
from processes import hooks
from processes import services as engine
from processes.audit import AuditEntry
from processes.models import AuditEvent, HumanTask

from . import rules
from .forms_render import decision_options
from .models import Vote
from .selectors import represented, task_get_for

_FALSE = {"false", "no", "off", "0"}
_completing: ContextVar[int | None] = ContextVar("baton_vote_completing", default=None)


def _prop(properties: dict | None, name: str) -> str | None:
    """The value of property ``name`` (``baton:`` / ``camunda:`` prefix optional, case-insensitive)."""
    for key, value in (properties or {}).items():
        if str(key).split(":")[-1].lower() == name.lower():
            return str(value).strip()
    return None


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


@dataclass(frozen=True)
class VoteConfig:
    """How one vote task is decided (read from the element's extension properties)."""

    quorum: str
    voter_groups: tuple[str, ...]
    voter_users: tuple[str, ...]
    outcomes: tuple[str, ...]
    approve_outcome: str
    veto_outcome: str
    veto: bool
    explicit_voters: bool = False

    def required(self, eligible: int) -> int:
        """N for M = ``eligible`` voters; raises ``ValidationError`` for a quorum that is not understood."""
        text = self.quorum.lower()
        if text == "all":
            return max(eligible, 1)
        if text == "majority":
            return eligible // 2 + 1
        if text.isdigit() and int(text) >= 1:
            return int(text)
        raise ValidationError(f"baton:quorum must be a positive integer, 'majority' or 'all', not '{self.quorum}'",
                              details=[{"field": "", "message": "The process declares an invalid quorum."}])


def _pick(outcomes: tuple[str, ...], written: str | None, preferred: tuple[str, ...], fallback: str) -> str:
    if written:
        return written
    return next((o for o in preferred if o in outcomes), fallback)


def config_for(definition: Any, element_id: str, candidate_groups: list[str] | None = None,
               candidate_users: list[str] | None = None, form_schema: dict | None = None) -> VoteConfig | None:
    """The vote configuration of ``element_id`` in ``definition``, or None if it is not a vote task."""
    meta = (definition.elements or {}).get(element_id) or {}
    properties = meta.get("properties") or {}
    quorum = _prop(properties, "quorum")
    if not quorum:
        return None
    outcomes = tuple(value for value, _ in decision_options(form_schema)) or ("approved", "rejected")
    voters = _split(_prop(properties, "voters"))
    return VoteConfig(
        quorum=quorum,
        voter_groups=tuple(voters or candidate_groups or ()),
        voter_users=() if voters else tuple(candidate_users or ()),
        outcomes=outcomes,
        approve_outcome=_pick(outcomes, _prop(properties, "approveOutcome"), ("approved", "approve"), outcomes[0]),
        veto_outcome=_pick(outcomes, _prop(properties, "vetoOutcome"), ("rejected", "reject"), "rejected"),
        veto=(_prop(properties, "veto") or "true").lower() not in _FALSE,
        explicit_voters=bool(voters),
    )


def vote_config(task: HumanTask) -> VoteConfig | None:
    """The vote configuration of a task (its instance's definition must be loaded), or None."""
    return config_for(task.instance.definition, task.element_id, task.candidate_groups, task.candidate_users,
                      task.form_schema)


def is_vote_task(task: HumanTask) -> bool:
    """True if the task is decided by votes (``baton:quorum`` on its element)."""
    meta = (task.instance.definition.elements or {}).get(task.element_id) or {}
    return bool(_prop(meta.get("properties"), "quorum"))


def _members(config: VoteConfig) -> list[tuple[int, str]]:
    """(id, username) of the active users in the voter groups or named as voters, by username."""
    condition = Q(groups__name__in=list(config.voter_groups)) | Q(username__in=list(config.voter_users))
    return list(get_user_model().objects.filter(condition, is_active=True).distinct()
                .order_by("username").values_list("pk", "username"))


@dataclass
class Eligible:
    """The voters M of one task (the snapshot taken when it opened)."""

    ids: list[int]
    usernames: list[str]
    snapshot: bool  # False: no vote_open event, read from the current members


def _snapshot(config: VoteConfig) -> dict:
    members = _members(config)
    payload = {"quorum": config.quorum, "voter_groups": list(config.voter_groups),
               "voter_users": list(config.voter_users), "eligible": [name for _, name in members],
               "eligible_ids": [pk for pk, _ in members], "veto": config.veto}
    try:
        payload["required"] = config.required(len(members))
    except ValidationError as exc:
        payload["error"] = exc.message
    return payload


def eligible_voters(task: HumanTask, config: VoteConfig) -> Eligible:
    """Read the snapshot of eligible voters from the task's ``vote_open`` event (else the current members)."""
    payload = (AuditEvent.objects.filter(instance_id=task.instance_id, command="vote_open", task_id=task.task_id)
               .order_by("-seq").values_list("payload", flat=True).first())
    if payload is None:
        members = _members(config)
        return Eligible([pk for pk, _ in members], [name for _, name in members], snapshot=False)
    return Eligible(list(payload.get("eligible_ids") or []), list(payload.get("eligible") or []), snapshot=True)


@dataclass
class Tally:
    """The count of one vote task: how many approvals are needed, who voted what, and whether it is decided."""

    required: int
    eligible: list[str]
    counts: dict[str, int]
    votes: list[Vote]
    approve_outcome: str
    veto_outcome: str
    outcome: str = ""  # the decided outcome, "" while open
    why: str = ""

    @property
    def approvals(self) -> int:
        return self.counts.get(self.approve_outcome, 0)

    @property
    def waiting_for(self) -> list[str]:
        voted = {_person(v).get_username() for v in self.votes}
        return [name for name in self.eligible if name not in voted]

    def summary(self) -> dict[str, Any]:
        """The JSON tally stored with the decision: counts per outcome, voters, N and M."""
        voters = []
        for v in self.votes:
            entry = {"voter": v.voter.get_username(), "outcome": v.outcome,
                     "at": v.created_at.isoformat() if v.created_at else None}
            if v.acting_for_id:
                entry["acting_for"] = v.acting_for.get_username()
            voters.append(entry)
        return {**self.counts, "required": self.required, "eligible": len(self.eligible), "voters": voters}


def _person(vote: Vote) -> Any:
    """Whose vote it is: the person a stand-in voted for, else the voter."""
    return vote.acting_for if vote.acting_for_id else vote.voter


def tally_of(task: HumanTask, config: VoteConfig, eligible: Eligible) -> Tally:
    """Count the task's votes and say whether (and how) it is decided."""
    votes = list(Vote.objects.filter(task=task).select_related("voter", "acting_for").order_by("created_at", "id"))
    counts = {outcome: 0 for outcome in config.outcomes}
    for vote in votes:
        counts[vote.outcome] = counts.get(vote.outcome, 0) + 1
    tally = Tally(required=config.required(len(eligible.ids)), eligible=eligible.usernames, counts=counts,
                  votes=votes, approve_outcome=config.approve_outcome, veto_outcome=config.veto_outcome)
    pending = set(eligible.ids) - {v.acting_for_id or v.voter_id for v in votes}
    if pending:  # a voter deactivated since the task opened can no longer vote
        pending = set(get_user_model().objects.filter(pk__in=pending, is_active=True).values_list("pk", flat=True))
    remaining = len(pending)
    if config.veto and counts.get(config.veto_outcome, 0):
        tally.outcome, tally.why = config.veto_outcome, f"vetoed ({config.veto_outcome})"
    elif tally.approvals >= tally.required:
        tally.outcome, tally.why = config.approve_outcome, f"{tally.approvals} of {tally.required} approvals reached"
    elif tally.approvals + remaining < tally.required:
        tally.outcome = config.veto_outcome
        tally.why = (f"{tally.required} approvals can no longer be reached ({tally.approvals} approved, "
                     f"{remaining} of {len(eligible.ids)} voters left)")
    return tally


def task_tally(task: HumanTask) -> Tally | None:
    """The current tally of a vote task for display (None for other tasks)."""
    config = vote_config(task)
    if config is None:
        return None
    try:
        return tally_of(task, config, eligible_voters(task, config))
    except ValidationError:
        return None


@dataclass
class VoteResult:
    """What ``vote_cast`` did: the vote, the tally after it, and the task (completed if this vote decided it)."""

    task: HumanTask
    vote: Vote
    tally: Tally
    decided: str = ""  # the outcome this vote decided, "" if the task is still open
    details: dict = field(default_factory=dict)


@contextmanager
def _completing_task(human_task_id: int) -> Iterator[None]:
    token = _completing.set(human_task_id)
    try:
        yield
    finally:
        _completing.reset(token)


def vote_cast(
    *,
    human_task_id: int,
    actor: Any,
    outcome: str = "",
    reason: str = "",
    data: dict | None = None,
    override_reason: str = "",
) -> VoteResult:
    """Cast one person's vote on a vote task; the deciding vote completes the engine task (once).

    Under the instance lock: the actor must be an eligible voter (``403
    not_a_voter``) who has not voted yet (``409 already_voted``); the engine's
    checks run as ``Command("task_vote")`` (separation of duties; an override
    needs ``approvals.override_sod`` and a reason); ``data`` is validated
    against the task's form. One ``task_vote`` event records the vote.
    """
    from .services import OVERRIDE_PERMISSION, _locked, _prepared, _record, _record_denial

    task = task_get_for(user=actor, human_task_id=human_task_id)
    config = vote_config(task)
    if config is None:
        raise Conflict(f"task {human_task_id} is not decided by votes", code="not_a_vote_task")
    override_reason = (override_reason or "").strip()
    if override_reason and not actor.has_perm(OVERRIDE_PERMISSION):
        raise PermissionDenied("you may not override separation of duties", code="override_not_permitted")
    data, outcome = _prepared(task, data, outcome)
    if outcome not in config.outcomes:
        raise ValidationError("choose how you vote", details=[
            {"field": "/decision", "message": f"Choose one of: {', '.join(config.outcomes)}."}])
    try:
        with engine._busy_as_conflict(), transaction.atomic():
            instance, task = _locked(human_task_id, actor)
            eligible = eligible_voters(task, config)
            voted = set(Vote.objects.filter(task=task).values_list("voter_id", "acting_for_id"))
            done = {acting or voter for voter, acting in voted}
            on_behalf = _on_behalf(actor, task, config, eligible, done)
            if (on_behalf or actor).pk in done or any(voter == actor.pk for voter, _ in voted):
                raise Conflict(f"{'you' if on_behalf is None else on_behalf.get_username()} already voted on task "
                               f"{human_task_id}", code="already_voted")
            command = hooks.Command("task_vote", instance, actor, task, data, outcome)
            with rules.acting_as(on_behalf), rules.override_active(actor, override_reason):
                hooks.run_checks(command)
            try:
                with transaction.atomic():
                    vote = Vote.objects.create(task=task, voter=actor, acting_for=on_behalf, outcome=outcome,
                                               reason=reason, data=data)
            except IntegrityError:
                raise Conflict(f"you already voted on task {human_task_id}", code="already_voted") from None
            tally = tally_of(task, config, eligible)
            payload = {"voter": actor.get_username(), "outcome": outcome, "reason": reason, "data": data,
                       "counts": tally.counts, "required": tally.required, "eligible": len(eligible.ids)}
            if on_behalf is not None:
                payload["acting_for"] = on_behalf.get_username()
            _record(instance, actor, task, "task_vote", payload)
            result = VoteResult(task=task, vote=vote, tally=tally)
            if tally.outcome:
                result.decided, result.details = tally.outcome, {"votes": tally.summary(), "why": tally.why}
                with rules.acting_as(on_behalf):
                    result.task = _complete(task, actor, tally, override_reason)
            return result
    except PermissionDenied as exc:
        if exc.code == "separation_of_duties":
            _record_denial(task, actor, exc)
        raise


def _on_behalf(actor: Any, task: HumanTask, config: VoteConfig, eligible: Eligible, done: set[int]) -> Any | None:
    """Whom the actor votes for: None (themself, if eligible), or an eligible person they stand in for.

    A stand-in who is not an eligible voter votes for the first person they
    currently stand in for who is eligible and has not voted yet.
    """
    if actor.pk in eligible.ids:
        return None
    for rep in represented(actor):
        if rep.id in eligible.ids and rep.id not in done:
            return get_user_model().objects.get(pk=rep.id)
    raise PermissionDenied(
        f"you are not one of the eligible voters of '{task.name or task.element_id}' "
        f"({', '.join(config.voter_groups + config.voter_users) or 'nobody'})", code="not_a_voter")


def _complete(task: HumanTask, actor: Any, tally: Tally, override_reason: str) -> HumanTask:
    """Complete the engine task with the decided outcome (the caller holds the instance lock)."""
    summary = tally.summary()
    kwargs = dict(human_task_id=task.pk, actor=actor, data={"votes": summary}, decision=tally.outcome,
                  reason=tally.why, details={"votes": summary})
    # the deciding voter's override (if they needed one to vote) covers the completion too
    with _completing_task(task.pk), rules.override_active(actor, override_reason):
        return engine.task_complete(**kwargs)


# --- engine hooks (registered in ApprovalsConfig.ready) ---------------------------------------------------------

def vote_task_rules(command: hooks.Command) -> None:
    """Engine check: vote tasks are not claimed or delegated, and complete only through their votes."""
    task = command.human_task
    if task is None or command.kind not in ("task_claim", "task_delegate", "task_complete"):
        return
    meta = (command.instance.definition.elements or {}).get(task.element_id) or {}
    if not _prop(meta.get("properties"), "quorum"):
        return
    name = task.name or task.element_id
    if command.kind == "task_claim":
        raise Conflict(f"'{name}' is decided by a vote of several people: there is nothing to claim, "
                       "each eligible voter votes on it directly", code="vote_task")
    if command.kind == "task_delegate":
        raise Conflict(f"'{name}' is decided by a vote of several people and cannot be handed to one person",
                       code="vote_task")
    if _completing.get() != task.pk:
        raise Conflict(f"'{name}' is decided by votes: cast a vote instead of completing it", code="vote_task")


def on_tasks_opening(run: Any, tasks: list[HumanTask]) -> None:
    """Make the groups named in ``baton:voters`` candidates of the new vote task (so voters see it)."""
    definition = run.instance.definition
    for task in tasks:
        meta = (definition.elements or {}).get(task.element_id) or {}
        voters = _split(_prop(meta.get("properties"), "voters"))
        if voters and _prop(meta.get("properties"), "quorum"):
            task.candidate_groups = list(dict.fromkeys([*(task.candidate_groups or []), *voters]))


def on_command_finished(run: Any, entries: list) -> None:
    """Snapshot the eligible voters of every vote task this command opened, as a ``vote_open`` event."""
    definition = run.instance.definition
    for task in run.created_tasks:
        meta = (definition.elements or {}).get(task.element_id) or {}
        if not _prop(meta.get("properties"), "quorum"):
            continue
        config = config_for(definition, task.element_id, task.candidate_groups, task.candidate_users, task.form_schema)
        entries.append(AuditEntry("vote_open", task_id=task.task_id, element_id=task.element_id,
                                  payload=_snapshot(config)))
