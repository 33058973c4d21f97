"""The inbox page's read: one tab of a person's tasks, filtered, sorted and paged, with the tab counts.

Visibility comes from ``approvals.selectors`` (the same scope conditions as
``tasks_for``); this module only adds filters, order, paging and the
stand-in markers, in a fixed number of queries.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import Count, F, Q
from django.utils import timezone

from processes.models import HumanTask

from .selectors import _authenticated, _represented_on, _represented_q, _scope_qs, is_candidate, represented

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
                   priority=int(priority) if re.fullmatch(r"-?[0-9]{1,9}", priority) else None,
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
