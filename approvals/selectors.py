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
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model

from django.db import connection
from django.core.paginator import Page, Paginator
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, TextField, Value
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


# --- the inbox page ------------------------------------------------------------------------------------------------

INBOX_TABS = ("mine", "groups", "done")
INBOX_PAGE_SIZE = 25
DUE_FILTERS = ("overdue", "today", "week")
_DUE_FIRST = F("due_at").asc(nulls_last=True)
INBOX_SORTS: dict[str, tuple] = {
    "due": (_DUE_FIRST, "-priority", "created_at", "id"),
    "-due": (F("due_at").desc(nulls_last=True), "-priority", "created_at", "id"),
    "priority": ("priority", _DUE_FIRST, "created_at", "id"),
    "-priority": ("-priority", _DUE_FIRST, "created_at", "id"),
    "created": ("created_at", "id"),
    "-created": ("-created_at", "-id"),
}


@dataclass(frozen=True)
class InboxFilters:
    """What the inbox shows of a tab: business-key search, process, priority, due window and sort order."""

    q: str = ""
    process: str = ""
    priority: int | None = None
    due: str = ""
    sort: str = ""

    @classmethod
    def from_params(cls, params: Any) -> "InboxFilters":
        """Read ``?q=&process=&priority=&due=&sort=``; values that mean nothing are dropped, never an error."""
        priority = str(params.get("priority", "")).strip()
        due, sort = params.get("due", ""), params.get("sort", "")
        return cls(q=str(params.get("q", "")).strip()[:255], process=str(params.get("process", "")).strip()[:255],
                   priority=int(priority) if priority.lstrip("-").isdigit() and len(priority) < 10 else None,
                   due=due if due in DUE_FILTERS else "", sort=sort if sort in INBOX_SORTS else "")

    def as_params(self) -> dict[str, str]:
        """The non-empty filters as query parameters (kept across tab links and pages)."""
        values = {"q": self.q, "process": self.process, "priority": "" if self.priority is None else str(self.priority),
                  "due": self.due, "sort": self.sort}
        return {k: v for k, v in values.items() if v}

    def q_filter(self, now: Any = None) -> Q:
        """The condition these filters put on tasks (``due`` windows in the local time zone)."""
        cond = Q()
        if self.q:
            cond &= Q(instance__business_key__icontains=self.q)
        if self.process:
            cond &= Q(instance__definition__process_key=self.process)
        if self.priority is not None:
            cond &= Q(priority=self.priority)
        if self.due:
            now = now or timezone.now()
            today = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
            cond &= {"overdue": Q(due_at__lt=now),
                     "today": Q(due_at__gte=today, due_at__lt=today + timedelta(days=1)),
                     "week": Q(due_at__gte=today, due_at__lt=today + timedelta(days=7))}[self.due]
        return cond


@dataclass
class Inbox:
    """One page of a tab, the tab counts under the same filters, the filter choices and stand-in markers."""

    tab: str
    filters: InboxFilters
    counts: dict[str, int]
    page: Page
    processes: list[tuple[str, str]]
    priorities: list[int]
    acting_for: dict[int, str]
    now: Any


def inbox_for(*, user: Any, tab: str, filters: InboxFilters, page: Any = 1, now: Any = None) -> Inbox:
    """Return the user's inbox page for a tab (``mine``, ``groups``, ``done``) in a fixed number of queries.

    Counts of all three tabs obey the same filters (one aggregate query);
    the process and priority choices are those of the user's tasks in any tab.
    Default order: open tabs soonest due first (no due date last), then
    higher priority; ``done`` newest completion first. 25 tasks a page.
    """
    tab = tab if tab in INBOX_TABS else "mine"
    now = now or timezone.now()
    reps = represented(user) if _authenticated(user) else []
    base = HumanTask.objects.select_related("instance__definition", "assignee", "completed_by")
    if not _authenticated(user):
        base = base.none()
        scopes = {name: Q(pk__in=[]) for name in (*INBOX_TABS, "all")}
    else:
        scopes = _scope_qs(user, reps)
    every = scopes["all"] | scopes["done"]
    condition = filters.q_filter(now)
    counts = base.filter(every).filter(condition).aggregate(
        **{name: Count("id", filter=scopes[name]) for name in INBOX_TABS})
    choices = (base.filter(every).order_by().values_list(
        "instance__definition__process_key", "instance__definition__name", "priority").distinct())
    processes: dict[str, str] = {}
    priorities: set[int] = set()
    for key, name, priority in choices:
        processes[key] = processes.get(key) or name or key
        priorities.add(priority)
    sort = filters.sort or ("-completed" if tab == "done" else "due")
    order = ("-completed_at", "-id") if sort == "-completed" else INBOX_SORTS[sort]
    tasks = base.filter(scopes[tab]).filter(condition).order_by(*order)
    found = Paginator(tasks, INBOX_PAGE_SIZE).get_page(page)
    found.object_list = list(found.object_list)
    marks = {}
    for task in found.object_list:  # ``acting_for_name``: whom the user would act for on it, as a stand-in
        task.acting_for_name = ""
        if tab != "done" and task.assignee_id != user.pk and not (
                task.assignee_id is None and is_candidate(user, task)):
            rep = _represented_on(task, reps)
            if rep is not None:
                marks[task.pk] = task.acting_for_name = rep.username
    return Inbox(tab=tab, filters=filters, counts={k: counts.get(k) or 0 for k in INBOX_TABS}, page=found,
                 processes=sorted(processes.items(), key=lambda item: item[1].lower()),
                 priorities=sorted(priorities, reverse=True), acting_for=marks, now=now)


def standin_tasks_for(*, user: Any, limit: int = 100) -> list[tuple[HumanTask, str]]:
    """The open tasks ``user`` sees only as a stand-in, each with the username of the person they act for."""
    reps = represented(user) if _authenticated(user) else []
    condition = _represented_q(reps)
    if condition is None:
        return []
    tasks = (HumanTask.objects.select_related("instance__definition", "assignee").filter(condition)
             .exclude(assignee=user).order_by(_DUE_FIRST, "-priority", "created_at", "id")[:limit])
    found = []
    for task in tasks:
        rep = None if task.assignee_id is None and is_candidate(user, task) else _represented_on(task, reps)
        if rep is not None:
            found.append((task, rep.username))
    return found


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
