"""The inbox page: tabs with counts, search, filters, sorting, pagination, stand-in markers, no leaks, bounded SQL."""
from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from approvals.models import StandIn
from approvals.inbox import InboxFilters, inbox_for
from processes import services as engine
from processes.models import HumanTask, HumanTaskStatus
from tests.approvals.conftest import upload_sample

EXPENSE = {"employee": "Alice", "amount": 120, "category": "travel", "description": "Train"}


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def start(user, key: str):
    return engine.instance_start(process_key="expense_approval", actor=user, business_key=key, data=EXPENSE)


def extra_task(instance, name: str, *, due=None, priority=0, groups=("Managers",), assignee=None, **fields):
    """A further open task row on ``instance`` (reads only: the inbox never touches the workflow)."""
    return HumanTask.objects.create(instance=instance, task_id=uuid.uuid4(), element_id="manager_approval",
                                    name=name, candidate_groups=list(groups), due_at=due, priority=priority,
                                    assignee=assignee, **fields)


def names_in(page: str) -> list[str]:
    return re.findall(r'<a href="/tasks/\d+/">([^<]+)</a>', page)


@pytest.fixture
def world(users):
    upload_sample("expense_approval")
    now = timezone.now()
    first = start(users["alice"], "EXP-100")
    second = start(users["alice"], "TRIP-200")
    base = first.human_tasks.get(status=HumanTaskStatus.OPEN)
    HumanTask.objects.filter(pk=base.pk).update(name="Base")
    HumanTask.objects.filter(instance=second).update(name="Trip")
    tasks = {
        "base": base,
        "late": extra_task(first, "Late", due=now - timedelta(days=2), priority=1),
        "today": extra_task(second, "Today", due=now + timedelta(minutes=1), priority=5),
        "nextweek": extra_task(second, "Nextweek", due=now + timedelta(days=3), priority=1),
        "mine": extra_task(first, "Mine", assignee=users["mike"], due=now + timedelta(days=30)),
        "done": extra_task(first, "Done", status=HumanTaskStatus.COMPLETED, completed_by=users["mike"],
                           completed_at=now),
        "legal": extra_task(first, "Legal only", groups=("Legal",)),
    }
    return {"now": now, "first": first, "second": second, "tasks": tasks}


@pytest.mark.django_db
def test_tabs_count_and_list_only_ones_own_tasks(users, world):
    page = client_for(users["mike"]).get("/?tab=groups").content.decode()
    assert "Mine (1)" in page and "My groups (5)" in page and "Done (1)" in page
    assert names_in(page) == ["Late", "Today", "Nextweek", "Base", "Trip"]  # soonest due first, no due date last
    assert "Legal only" not in page and "Mine" not in names_in(page)
    eve = client_for(users["eve"]).get("/?tab=groups").content.decode()
    assert names_in(eve) == [] and "My groups (0)" in eve and "Mine (0)" in eve
    lena = client_for(users["lena"]).get("/?tab=groups").content.decode()
    assert names_in(lena) == ["Legal only"]


@pytest.mark.django_db
def test_filters_apply_to_list_and_counts_and_are_kept_across_tabs(users, world):
    mike = client_for(users["mike"])
    page = mike.get("/?tab=groups&q=trip").content.decode()
    assert names_in(page) == ["Today", "Nextweek", "Trip"] and "My groups (3)" in page and "Mine (0)" in page
    assert 'href="?tab=mine&amp;q=trip"' in page and 'href="?tab=done&amp;q=trip"' in page
    overdue = mike.get("/?tab=groups&due=overdue").content.decode()
    assert names_in(overdue) == ["Late"] and "Overdue" in overdue and "My groups (1)" in overdue
    assert names_in(mike.get("/?tab=groups&due=week").content.decode()) == ["Today", "Nextweek"]
    assert names_in(mike.get("/?tab=groups&priority=1").content.decode()) == ["Late", "Nextweek"]
    by_process = mike.get("/?tab=groups&process=expense_approval&priority=5").content.decode()
    assert names_in(by_process) == ["Today"]
    assert '<option value="expense_approval" selected>Expense approval</option>' in by_process
    assert 'href="?tab=mine&amp;process=expense_approval&amp;priority=5"' in by_process
    assert names_in(mike.get("/?tab=groups&process=nothing").content.decode()) == []
    # nonsense values are dropped, not errors
    assert names_in(mike.get("/?tab=groups&due=soon&priority=x&sort=bogus").content.decode()) == [
        "Late", "Today", "Nextweek", "Base", "Trip"]


@pytest.mark.django_db
def test_sorting(users, world):
    mike = client_for(users["mike"])
    def order(sort):
        return names_in(mike.get(f"/?tab=groups&sort={sort}").content.decode())

    assert order("-priority") == ["Today", "Late", "Nextweek", "Base", "Trip"]
    assert order("priority") == ["Base", "Trip", "Late", "Nextweek", "Today"]
    assert order("-due") == ["Nextweek", "Today", "Late", "Base", "Trip"]
    assert order("-created") == ["Nextweek", "Today", "Late", "Trip", "Base"]
    assert order("created") == ["Base", "Trip", "Late", "Today", "Nextweek"]


@pytest.mark.django_db
def test_done_tab_newest_completion_first(users, world):
    later = extra_task(world["first"], "Done later", status=HumanTaskStatus.COMPLETED, completed_by=users["mike"],
                       completed_at=world["now"] + timedelta(minutes=5))
    page = client_for(users["mike"]).get("/?tab=done").content.decode()
    assert names_in(page) == [later.name, "Done"] and "Done (2)" in page


@pytest.mark.django_db
def test_pagination_keeps_filters(users, world):
    for i in range(30):
        extra_task(world["second"], f"Bulk {i:02d}", priority=9)
    mike = client_for(users["mike"])
    first = mike.get("/?tab=groups&priority=9&sort=created").content.decode()
    assert len(names_in(first)) == 25 and "Page 1 of 2" in first and "My groups (30)" in first
    assert 'href="?tab=groups&amp;priority=9&amp;sort=created&amp;page=2"' in first
    second = mike.get("/?tab=groups&priority=9&sort=created&page=2").content.decode()
    assert names_in(second) == [f"Bulk {i:02d}" for i in range(25, 30)] and "Previous page" in second
    assert len(names_in(mike.get("/?tab=groups&priority=9&page=99").content.decode())) == 5  # last page


@pytest.mark.django_db
def test_acting_for_marker(users, world):
    StandIn.objects.create(user=users["lena"], stand_in=users["fiona"], starts_at=timezone.now())
    page = client_for(users["fiona"]).get("/?tab=groups").content.decode()
    assert names_in(page) == ["Legal only"] and "Acting for lena" in page
    box = inbox_for(user=users["fiona"], tab="groups", filters=InboxFilters())
    assert box.acting_for == {world["tasks"]["legal"].pk: "lena"}
    # mike's own candidate tasks carry no marker
    assert "Acting for" not in client_for(users["mike"]).get("/?tab=groups").content.decode()


@pytest.mark.django_db
def test_query_count_does_not_grow_with_tasks(users, world, django_assert_max_num_queries):
    mike = client_for(users["mike"])
    mike.get("/?tab=groups")
    with django_assert_max_num_queries(12):
        small = mike.get("/?tab=groups")
    for i in range(15):
        extra_task(world["second"], f"More {i}", due=world["now"] + timedelta(days=i))
    with django_assert_max_num_queries(12):
        big = mike.get("/?tab=groups")
    assert len(names_in(big.content.decode())) == 20 > len(names_in(small.content.decode()))
