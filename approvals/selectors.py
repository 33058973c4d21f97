"""Who may see what: roles, task and instance visibility, start rights.

Every list is filtered in the database, so a task or instance outside a
user's rights never appears, and a single read of something not visible
answers ``NotFound`` exactly as if it did not exist (no existence oracle).
Roles are Django groups (``designers``, ``operators``, ``auditors``); admin
is a superuser; every authenticated user is a requester, and an approver of
the tasks whose candidate groups/users include them.
A stand-in also sees the open tasks of the people they currently stand in
for, and a directory manager the open tasks assigned to their direct reports.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model

from django.db import connection
from django.db.models import Exists, OuterRef, Q, QuerySet, TextField, Value
from django.db.models.functions import Cast, StrIndex
from django.db.models.lookups import GreaterThan
from django.utils import timezone

from bpmn.models import ProcessDefinition
from core.errors import NotFound, ValidationError
from processes.models import HumanTask, HumanTaskStatus, ProcessInstance

from .models import StandIn

ROLE_GROUPS = {"designers": "designer", "operators": "operator", "auditors": "auditor"}
SCOPES = ("mine", "groups", "done", "all")
STARTER_PROPERTIES = ("starters", "baton:starters", "candidateStarterGroups", "camunda:candidateStarterGroups")


def _authenticated(user: Any) -> bool:
    return bool(getattr(user, "is_authenticated", False) and getattr(user, "is_active", False))


def group_names(user: Any) -> list[str]:
    """Return the names of the user's groups (cached on the user object for one request)."""
    if not _authenticated(user):
        return []
    cached = getattr(user, "_baton_group_names", None)
    if cached is None:
        cached = list(user.groups.values_list("name", flat=True))
        user._baton_group_names = cached
    return cached


def roles_of(user: Any) -> set[str]:
    """Return the user's roles: approver, requester, designer, operator, auditor, admin."""
    if not _authenticated(user):
        return set()
    roles = {"approver", "requester"}
    roles |= {role for group, role in ROLE_GROUPS.items() if group in group_names(user)}
    if user.is_superuser:
        roles.add("admin")
    return roles


def sees_everything(user: Any) -> bool:
    """Operators, auditors and admins read every task and instance."""
    return bool(roles_of(user) & {"operator", "auditor", "admin"})


def _json_list_has(field: str, value: str) -> Q:
    """``field`` (a JSON list of strings) contains ``value`` exactly, on PostgreSQL and SQLite alike."""
    if connection.vendor == "postgresql":
        return Q(**{f"{field}__contains": [value]})
    # SQLite has no JSON containment lookup, and its LIKE ignores case: find the quoted,
    # JSON-encoded element in the stored text with instr(), which is case-sensitive.
    return Q(GreaterThan(StrIndex(Cast(field, TextField()), Value(json.dumps(value))), 0))


def candidate_q(user: Any) -> Q:
    """Tasks whose candidate users or groups include ``user`` (an empty Q-match if none)."""
    q = _json_list_has("candidate_users", user.get_username())
    for name in group_names(user):
        q |= _json_list_has("candidate_groups", name)
    return q


def is_candidate(user: Any, task: HumanTask) -> bool:
    """True if the user is a candidate of the task (by username or group)."""
    if not _authenticated(user):
        return False
    return user.get_username() in (task.candidate_users or []) or bool(
        set(group_names(user)) & set(task.candidate_groups or []))


@dataclass(frozen=True)
class Represented:
    """Someone the user currently stands in for: their id, username and group names."""

    id: int
    username: str
    groups: tuple[str, ...]


def represented(user: Any) -> list[Represented]:
    """Whom ``user`` stands in for right now (active stand-ins of active users), in one query."""
    if not _authenticated(user):
        return []
    now = timezone.now()
    rows = (StandIn.objects.filter(stand_in=user, starts_at__lte=now, user__is_active=True)
            .filter(Q(ends_at__isnull=True) | Q(ends_at__gt=now))
            .values_list("user_id", "user__username", "user__groups__name"))
    found: dict[int, tuple[str, list[str]]] = {}
    for user_id, username, group in rows:
        entry = found.setdefault(user_id, (username, []))
        if group and group not in entry[1]:
            entry[1].append(group)
    return [Represented(pk, name, tuple(groups)) for pk, (name, groups) in sorted(found.items())]


def _represented_q(reps: list[Represented], *, claimable_only: bool = False) -> Q | None:
    """Open tasks of the people in ``reps``: assigned to them or (unassigned) naming them as candidates."""
    if not reps:
        return None
    candidates = Q()
    for rep in reps:
        candidates |= _json_list_has("candidate_users", rep.username)
        for name in rep.groups:
            candidates |= _json_list_has("candidate_groups", name)
    claimable = Q(assignee__isnull=True) & candidates
    q = claimable if claimable_only else Q(assignee_id__in=[rep.id for rep in reps]) | claimable
    return Q(status=HumanTaskStatus.OPEN) & q


def _manager_q(user: Any) -> Q:
    """Open tasks assigned to the user's direct reports in the directory (so a manager can reassign them)."""
    return Q(status=HumanTaskStatus.OPEN, assignee__profile__manager=user)


def acting_for(user: Any, task: HumanTask) -> Any | None:
    """Return the person ``user`` would act for on ``task`` as their stand-in, or ``None`` (acting as themself).

    A user acts as themself on a task assigned to them or, unassigned, one they
    are a candidate of; otherwise as the stand-in of a represented person the
    task is assigned to, or (unassigned) who is one of its candidates.
    """
    if not _authenticated(user) or task.assignee_id == user.pk:
        return None
    if task.assignee_id is None and is_candidate(user, task):
        return None
    rep = _represented_on(task, represented(user))
    return get_user_model().objects.get(pk=rep.id) if rep is not None else None


def _represented_on(task: HumanTask, reps: list[Represented]) -> Represented | None:
    """The first of ``reps`` whose task ``task`` is (assigned to them, or unassigned naming them)."""
    for rep in reps:
        if task.assignee_id == rep.id or (task.assignee_id is None and (
                rep.username in (task.candidate_users or []) or set(rep.groups) & set(task.candidate_groups or []))):
            return rep
    return None


def _visible_tasks(user: Any) -> QuerySet[HumanTask]:
    qs = HumanTask.objects.select_related("instance__definition", "assignee", "completed_by")
    if not _authenticated(user):
        return qs.none()
    if sees_everything(user):
        return qs
    q = Q(assignee=user) | Q(completed_by=user) | candidate_q(user) | _manager_q(user)
    standing_in = _represented_q(represented(user))
    return qs.filter(q | standing_in if standing_in is not None else q)


def tasks_for(*, user: Any, scope: str = "all") -> QuerySet[HumanTask]:
    """Return the user's inbox for ``scope``.

    ``mine``: open tasks assigned to me; ``groups``: open unassigned tasks I may
    claim (candidate user or member of a candidate group); ``done``: tasks I
    completed; ``all``: mine and groups. Operators get no wider inbox: their
    wider read access is through ``task_get_for`` and the instance pages.
    """
    if scope not in SCOPES:
        raise ValidationError(f"unknown task scope '{scope}'", details=[{"field": "scope", "message":
                              f"must be one of {', '.join(SCOPES)}"}])
    qs = HumanTask.objects.select_related("instance__definition", "assignee", "completed_by")
    if not _authenticated(user):
        return qs.none()
    if scope == "done":
        return qs.filter(_scope_qs(user, [])["done"]).order_by("-completed_at", "-id")
    condition = _scope_qs(user, represented(user))[scope]
    return qs.filter(condition).order_by("-priority", "created_at", "id")


def _scope_qs(user: Any, reps: list[Represented]) -> dict[str, Q]:
    """The condition of each inbox scope (``mine``, ``groups``, ``done``, ``all``) for ``user``."""
    mine, groups = Q(assignee=user), Q(assignee__isnull=True) & candidate_q(user)
    if reps:  # a stand-in's inbox also holds the open tasks of the people they stand in for
        mine |= Q(assignee_id__in=[rep.id for rep in reps])
        groups |= _represented_q(reps, claimable_only=True)
    is_open = Q(status=HumanTaskStatus.OPEN)
    return {"mine": is_open & mine, "groups": is_open & groups, "all": is_open & (mine | groups),
            "done": Q(status=HumanTaskStatus.COMPLETED, completed_by=user)}


def task_get_for(*, user: Any, human_task_id: int) -> HumanTask:
    """Return the task if the user may see it, else ``NotFound`` (the same answer as a missing task)."""
    task = _visible_tasks(user).filter(pk=human_task_id).first()
    if task is None:
        raise NotFound(f"task {human_task_id} does not exist")
    return task


def instances_for(*, user: Any) -> QuerySet[ProcessInstance]:
    """Return the instances the user started or has/had a task in; operators, auditors, admins see all."""
    qs = ProcessInstance.objects.select_related("definition", "started_by")
    if not _authenticated(user):
        return qs.none()
    if sees_everything(user):
        return qs
    q = Q(assignee=user) | Q(completed_by=user) | candidate_q(user) | _manager_q(user)
    standing_in = _represented_q(represented(user))
    tasks = HumanTask.objects.filter(instance=OuterRef("pk")).filter(q | standing_in if standing_in is not None else q)
    return qs.filter(Q(started_by=user) | Exists(tasks))


def instance_get_for(*, user: Any, instance_id: int) -> ProcessInstance:
    """Return the instance if the user may see it, else ``NotFound``."""
    instance = instances_for(user=user).filter(pk=instance_id).first()
    if instance is None:
        raise NotFound(f"process instance {instance_id} does not exist")
    return instance


def starters_of(definition: ProcessDefinition) -> tuple[list[str], list[str]]:
    """Return (groups, users) allowed to start the definition's process; both empty = everyone.

    Read from the process element's metadata: camunda ``candidateStarterGroups``
    / ``candidateStarterUsers`` and the ``baton:starters`` property (groups).
    """
    meta = (definition.elements or {}).get(definition.process_key) or {}
    groups = list(meta.get("candidate_groups") or [])
    users = list(meta.get("candidate_users") or [])
    properties = meta.get("properties") or {}
    for name in STARTER_PROPERTIES:
        value = properties.get(name)
        if value and name.split(":")[-1] in ("starters", "candidateStarterGroups"):
            groups += [part.strip() for part in str(value).split(",") if part.strip()]
    return list(dict.fromkeys(groups)), list(dict.fromkeys(users))


def can_start(*, user: Any, process_key: str) -> bool:
    """True if the user may start the latest version of ``process_key``."""
    if not _authenticated(user):
        return False
    definition = ProcessDefinition.objects.filter(process_key=process_key).order_by("-version").first()
    if definition is None:
        return False
    if user.is_superuser:
        return True
    groups, users = starters_of(definition)
    if not groups and not users:
        return True
    return user.get_username() in users or bool(set(groups) & set(group_names(user)))


def definition_get_for(*, user: Any, definition_id: int) -> ProcessDefinition:
    """Return a definition its diagram may be shown to: designers, operators, auditors, admins and
    the people allowed to start it; ``NotFound`` (as for a missing one) for anyone else."""
    definition = ProcessDefinition.objects.filter(pk=definition_id).first()
    roles = roles_of(user)
    if definition is not None and roles:
        if roles & {"designer", "operator", "auditor", "admin"}:
            return definition
        groups, users = starters_of(definition)
        if (not groups and not users) or user.get_username() in users or set(groups) & set(group_names(user)):
            return definition
    raise NotFound(f"definition {definition_id} does not exist")
