"""The README's browser walkthrough, step by step, as the demo users on the demo data of ``make run``.

Each test seeds the demo exactly as ``make run`` does (``manage.py seed_demo``), then logs in through the login
form with the demo passwords (``<name>-demo``) and does what the README tells the reader to do, asserting what the
reader is told they will see. The embedded worker of ``manage.py serve`` is replaced by calling its sweep
(``processes.embedded.sweep_once``) in the test, with no backoff, so the failing demo job reaches its incident
at once.
"""
from __future__ import annotations

import io
import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.core.management import call_command

from processes import embedded
from processes.models import HumanTask, HumanTaskStatus, Incident, ProcessInstance

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]
BROKEN = ROOT / "tests" / "fixtures" / "bpmn" / "upload" / "broken_structure.bpmn"
SAMPLES = ROOT / "processes" / "samples"


@pytest.fixture
def demo(transactional_db: None, _fast_passwords: None) -> str:
    """The demo data of ``make run``: users, groups, directory, sample processes, demo instances."""
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def _at_inbox(page) -> None:
    """Wait until the browser is on the inbox (where a decision and a login land)."""
    page.wait_for_url(lambda url: urlsplit(url).path == "/")


def _nav(page, label: str) -> None:
    """Follow a link of the main navigation."""
    page.get_by_role("navigation", name="Main").get_by_role("link", name=label, exact=True).click()


def _switch(page, username: str) -> None:
    """Log out (the button in the navigation) and log in again as ``username`` through the login form."""
    page.get_by_role("button", name=re.compile(r"^Log out ")).click()
    page.wait_for_url("**/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(f"{username}-demo")
    page.get_by_role("button", name="Log in").click()
    _at_inbox(page)
    assert page.get_by_role("button", name=f"Log out {username}").count() == 1


def _groups_tab(page) -> None:
    page.get_by_role("link", name=re.compile(r"^My groups")).click()
    page.wait_for_url(re.compile(r"tab=groups"))


def _task_row(page, business_key: str, task_name: str):
    """The inbox row of the task ``task_name`` of the instance with ``business_key``."""
    return page.locator("tbody tr", has=page.get_by_role("cell", name=business_key, exact=True)).filter(
        has=page.get_by_role("link", name=task_name))


def _decision_form(page, button: str = "Approve"):
    return page.locator("form", has=page.get_by_role("button", name=button, exact=True))


def _decide(page, reason: str, button: str = "Approve") -> None:
    form = _decision_form(page, button)
    form.get_by_label("Reason").fill(reason)
    form.get_by_role("button", name=button, exact=True).click()


def _diagram(page):
    page.wait_for_selector("#diagram[data-diagram-state=ready] svg")
    return lambda element_id: page.locator(f'#diagram .djs-element[data-element-id="{element_id}"]').get_attribute(
        "class").split()


def _error_of(container, label: str) -> str:
    """Wait until the field labelled ``label`` is marked invalid; return the error text it is described by."""
    field = container.get_by_label(label)
    field.and_(container.locator("[aria-invalid=true]")).wait_for()
    error_id = field.get_attribute("aria-describedby").split()[-1]
    return container.page.locator(f"#{error_id}").inner_text().strip()


def _unread(page) -> int:
    """The unread count of the bell in the navigation (0 when it shows none)."""
    bell = page.get_by_role("navigation", name="Main").locator("a.bell")
    label = bell.get_attribute("aria-label") or ""
    found = re.fullmatch(r"Notifications, (\d+) unread", label)
    return int(found.group(1)) if found else 0


def test_steps_1_to_3_requester_approvers_and_completion(demo, new_page):
    for name in ("alice", "mike", "fiona", "lena", "sam", "oscar", "dana", "audrey", "admin"):  # make run prints them
        assert re.search(rf"^  {name} +{name}-demo ", demo, re.M), name
    # 1. alice starts "Expense approval" for 5000
    page = new_page("alice")
    unread_before = _unread(page)
    _nav(page, "Start")
    form = page.locator("section", has=page.get_by_role("heading", name=re.compile(r"^Expense approval")))
    form.get_by_label("Amount").fill("5000")
    form.get_by_role("button", name="Start").click()
    # the README's "amount 5000" is not enough: the form names each other required field
    form = page.locator("section", has=page.get_by_role("heading", name=re.compile(r"^Expense approval")))
    for label in ("Employee", "Category"):
        assert _error_of(form, label), label
    assert float(form.get_by_label("Amount").input_value()) == 5000  # what she typed is kept
    assert not ProcessInstance.objects.filter(data__amount=5000).exists()
    form.get_by_label("Business key").fill("EXP-WALK")
    form.get_by_label("Employee").fill("alice")
    form.get_by_label("Category").select_option(label="Travel")
    form.get_by_label("Description").fill("Conference in Lyon")
    form.get_by_role("button", name="Start").click()
    page.wait_for_url(re.compile(r"/instances/\d+/$"))
    instance = ProcessInstance.objects.get(business_key="EXP-WALK")
    assert page.url.endswith(f"/instances/{instance.pk}/")
    assert "Started Expense approval." in page.get_by_role("status").first.inner_text()
    state = _diagram(page)
    assert "baton-active" in state("manager_approval")
    assert page.locator("#diagram-legend").inner_text().strip().startswith("Active: Manager approval")

    # 2. mike (alice's manager) finds it under "My groups", reads it, tries Reject without reason, approves
    _switch(page, "mike")
    _groups_tab(page)
    _task_row(page, "EXP-WALK", "Manager approval").get_by_role("link", name="Manager approval").click()
    page.wait_for_url(re.compile(r"/tasks/\d+/$"))
    assert page.get_by_role("heading", level=1).inner_text() == "Manager approval"
    assert "baton-current" in _diagram(page)("manager_approval")  # this task's own step stands out
    data = page.locator("details", has=page.get_by_text("Instance data")).inner_text()  # open: what is decided
    assert "5000" in data and "Conference in Lyon" in data
    history = page.locator("section", has=page.get_by_role("heading", name="History")).inner_text()
    assert "alice" in history and "instance_start" in history
    _decision_form(page, "Reject").get_by_role("button", name="Reject", exact=True).click()
    assert _error_of(_decision_form(page, "Reject"), "Reason") == "This field is required."  # on the Reason field
    assert page.locator("#f-reason-error").is_visible()
    assert instance.human_tasks.get(element_id="manager_approval").status == HumanTaskStatus.OPEN
    _decide(page, "Needed for the conference")
    _at_inbox(page)
    assert "“Manager approval” completed." in page.get_by_role("status").first.inner_text()

    # 3. fiona approves the Finance step; alice sees it completed, all done, decisions listed, two notices
    _switch(page, "fiona")
    _groups_tab(page)
    _task_row(page, "EXP-WALK", "Finance approval").get_by_role("link", name="Finance approval").click()
    page.wait_for_url(re.compile(r"/tasks/\d+/$"))
    _decide(page, "Within the travel budget")
    _at_inbox(page)
    _switch(page, "alice")
    page.goto(f"/instances/{instance.pk}/")
    assert page.locator("#instance-status").inner_text() == "Completed"
    state = _diagram(page)
    assert page.locator("#diagram .djs-element.baton-active").count() == 0
    for element_id in ("manager_approval", "finance_approval"):
        assert "baton-done" in state(element_id), element_id
    timeline = page.locator("#timeline").inner_text()
    assert "Manager approval" in timeline and "Finance approval" in timeline
    history = page.locator("#history").inner_text()
    assert "Needed for the conference" in history and "Within the travel budget" in history
    assert history.count("approve") >= 2
    assert _unread(page) == unread_before + 2
    page.get_by_role("navigation", name="Main").get_by_role("link", name=re.compile(r"^Notifications")).click()
    page.wait_for_url("**/notifications/")
    notices = page.locator("li.notification", has_text="EXP-WALK")
    assert notices.count() == 2
    texts = " ".join(notices.all_inner_texts())
    assert "Needed for the conference" in texts and "Within the travel budget" in texts


def test_step_4_designer_reads_element_errors_and_publishes_a_version(demo, new_page, tmp_path):
    dana = new_page("dana")
    _nav(dana, "Definitions")
    dana.get_by_role("link", name=re.compile(r"^Upload")).click()
    dana.wait_for_url("**/definitions/upload/")
    dana.get_by_label("Files").set_input_files(str(BROKEN))
    dana.get_by_role("button", name="Upload").click()
    dana.locator("table#upload-errors").wait_for()
    rows = {row.locator("code").first.inner_text(): row.inner_text()
            for row in dana.locator("table#upload-errors tbody tr").all() if row.locator("code").count()}
    assert "missing_end" in rows["to_nowhere"] and "ghost" in rows["from_nowhere"]
    assert "no outgoing" in rows["start"] and "no incoming" in rows["end"]
    assert "upload-error" in dana.get_by_label("Files").get_attribute("aria-describedby").split()
    # the files of a sample folder, as they are: the demo already holds them, so no new version appears
    folder = SAMPLES / "expense_approval"
    files = [str(p) for p in sorted(folder.iterdir()) if p.suffix in (".bpmn", ".json")]
    dana.get_by_label("Files").set_input_files(files)
    dana.get_by_role("button", name="Upload").click()
    dana.wait_for_url(re.compile(r"/definitions/\d+/$"))
    assert "Published expense_approval version 1." in dana.get_by_role("status").first.inner_text()
    # an edited diagram with the same forms publishes version 2
    edited = tmp_path / "expense_approval.bpmn"
    edited.write_text((folder / "expense_approval.bpmn").read_text().replace(
        'id="expense_approval" name="Expense approval"', 'id="expense_approval" name="Expense approval (2026)"'))
    dana.goto("/definitions/upload/")
    dana.get_by_label("Files").set_input_files([str(edited), *[f for f in files if f.endswith(".json")]])
    dana.get_by_role("button", name="Upload").click()
    dana.wait_for_url(re.compile(r"/definitions/\d+/$"))
    assert "Published expense_approval version 2." in dana.get_by_role("status").first.inner_text()
    _nav(dana, "Definitions")
    dana.wait_for_url("**/definitions/")
    row = dana.locator("tbody tr", has=dana.locator("code", has_text=re.compile(r"^expense_approval$")))
    assert "Expense approval (2026)" in row.inner_text() and "v2" in row.inner_text()


def _run_worker_until_incident(settings) -> Incident:
    """What the embedded worker of ``make run`` does, without waiting for the backoff."""
    settings.BATON_JOB_BACKOFF_SECONDS = 0
    for _ in range(10):
        incident = Incident.objects.filter(instance__business_key="INV-SYNC-1").first()
        if incident is not None:
            return incident
        embedded.sweep_once()
    pytest.fail("the failing demo job never opened an incident")


def test_step_5_operator_retries_the_incident_and_suspends_resumes_cancels(demo, new_page, settings):
    incident = _run_worker_until_incident(settings)
    oscar = new_page("oscar")
    _nav(oscar, "Incidents")
    card = oscar.locator(f"#incident-{incident.pk}")
    text = card.inner_text()
    assert "INV-SYNC-1" in text and "push_invoice" in text and "Open" in text
    assert oscar.locator("article.incident").count() == 1  # the failing demo service task, nothing else
    card.get_by_label("Data (JSON)").fill("{not json")
    card.get_by_role("button", name="Retry").click()
    card = oscar.locator(f"#incident-{incident.pk}")
    assert _error_of(card, "Data (JSON)")
    card.get_by_label("Data (JSON)").fill(json.dumps({"invoice_service_url": "http://erp.example/invoices"}))
    card.get_by_role("button", name="Retry").click()
    status = oscar.get_by_role("status").first.inner_text()
    assert f"Incident {incident.pk} retried" in status
    incident.refresh_from_db()
    assert incident.status != "open"
    assert oscar.locator(f"#incident-{incident.pk}").count() == 0  # no longer among the open ones
    instance = ProcessInstance.objects.get(business_key="INV-SYNC-1")
    assert instance.data.get("invoice_service_url") == "http://erp.example/invoices"

    _nav(oscar, "Instances")
    oscar.get_by_label("Business key contains").fill("EXP-1001")
    oscar.get_by_role("button", name="Filter").click()
    oscar.wait_for_url(re.compile(r"q=EXP-1001"))
    assert oscar.locator("table.ops tbody tr").count() == 1
    target = ProcessInstance.objects.get(business_key="EXP-1001")
    oscar.get_by_role("link", name=f"#{target.pk}", exact=True).click()
    oscar.wait_for_url(f"**/instances/{target.pk}/")
    assert oscar.locator("#instance-status").inner_text() == "Waiting"
    oscar.get_by_role("button", name="Suspend").click()  # no reason: the browser does not send the form
    assert oscar.get_by_label("Reason to suspend").evaluate("el => el.validity.valueMissing")
    assert oscar.locator("#instance-status").inner_text() == "Waiting"
    oscar.get_by_label("Reason to suspend").fill("Waiting for the receipt")
    oscar.get_by_role("button", name="Suspend").click()
    oscar.wait_for_selector("#instance-status:text-is('Suspended')")
    oscar.get_by_role("button", name="Resume").click()
    oscar.wait_for_selector("#instance-status:text-is('Waiting')")
    oscar.get_by_role("button", name="Cancel instance").click()
    assert oscar.get_by_label("Reason to cancel").evaluate("el => el.validity.valueMissing")
    oscar.get_by_label("Reason to cancel").fill("Claimed twice")
    oscar.get_by_role("button", name="Cancel instance").click()
    oscar.wait_for_selector("#instance-status:text-is('Cancelled')")
    assert f"Instance {target.pk} cancelled." in oscar.get_by_role("status").first.inner_text()
    history = oscar.locator("#history").inner_text()
    assert "Waiting for the receipt" in history and "Claimed twice" in history
    # the server refuses a reasonless cancel too, naming the field (the form without the browser's check)
    other = ProcessInstance.objects.get(business_key="PR-33")
    oscar.goto(f"/instances/{other.pk}/cancel/")
    oscar.get_by_role("button", name="Cancel instance").click()
    assert "Give a reason" in _error_of(oscar.locator("main"), "Reason (required)")


def test_step_6_auditor_filters_the_audit_and_verifies_every_chain(demo, new_page):
    audrey = new_page("audrey")
    _nav(audrey, "Audit")
    audrey.wait_for_url("**/audit/")
    table = audrey.locator("table.audit")
    assert table.locator("tbody tr").count() >= 10
    audrey.get_by_label("Actor username").fill("mike")
    audrey.get_by_label("Command").select_option("task_complete")
    audrey.get_by_role("button", name="Filter").click()
    audrey.wait_for_url(re.compile(r"actor=mike"))
    rows = audrey.locator("table.audit tbody tr")
    assert rows.count() == 2  # the demo's two manager approvals
    for text in rows.all_inner_texts():
        assert "mike" in text and "task_complete" in text
    audrey.get_by_label("Instance id").fill("abc")
    audrey.get_by_role("button", name="Filter").click()
    assert _error_of(audrey.locator("main"), "Instance id")
    audrey.get_by_role("button", name="Verify all chains").click()
    audrey.wait_for_url("**/audit/verify/")
    result = audrey.locator("#audit-result").inner_text()
    assert "Chain verification: OK." in result and "every hash links up" in result
    chains = int(re.search(r"(\d+) chains?", result).group(1))
    assert chains >= ProcessInstance.objects.count()


def test_step_7_stand_in_sees_mikes_tasks_acting_for_him(demo, new_page):
    page = new_page("mike")
    _nav(page, "Out of office")
    page.wait_for_url("**/me/away/")
    page.get_by_label(re.compile(r"^Stand-in")).fill("sam")
    page.get_by_label("Reason (optional)").fill("Holiday")
    page.get_by_role("button", name="Set stand-in").click()
    stand_ins = page.locator("section", has=page.get_by_role("heading", name="Your stand-ins"))
    assert "sam" in stand_ins.locator("tbody").inner_text() and "Holiday" in stand_ins.inner_text()

    _switch(page, "sam")
    task = HumanTask.objects.get(instance__business_key="EXP-1001", element_id="manager_approval")
    _groups_tab(page)  # mike's tasks are offered to his groups, not assigned: they are on sam's "My groups" tab
    marked = page.locator("tbody tr", has=page.locator(".acting-for", has_text="Acting for mike"))
    row = marked.filter(has=page.locator(f'a[href="/tasks/{task.pk}/"]'))
    assert row.count() == 1, page.locator("main").inner_text()
    assert "EXP-1001" in row.inner_text()
    row.get_by_role("link", name="Manager approval").click()
    page.wait_for_url(f"**/tasks/{task.pk}/")
    assert "You are acting for mike" in page.get_by_role("note").inner_text()
    _decide(page, "Approved while mike is away")
    _at_inbox(page)
    task.refresh_from_db()
    assert task.status == HumanTaskStatus.COMPLETED and task.decision == "approve"

    _switch(page, "mike")
    page.goto(f"/tasks/{task.pk}/")
    history = page.locator("section", has=page.get_by_role("heading", name="History")).inner_text()
    assert re.search(r"sam\s+for mike", history), history


def _vote(page, task_pk: int, reason: str) -> None:
    """Open the vote task, vote Approve with ``reason``, and come back to the task page."""
    page.goto(f"/tasks/{task_pk}/")
    _decide(page, reason)
    _at_inbox(page)
    page.goto(f"/tasks/{task_pk}/")


def test_step_8_board_vote_needs_two_of_three(demo, new_page):
    instance = ProcessInstance.objects.get(business_key="BOARD-1")
    task = instance.human_tasks.get(element_id="board_vote", status=HumanTaskStatus.OPEN)
    page = new_page("mike")
    page.goto(f"/tasks/{task.pk}/")
    tally = page.locator(".votes .tally")
    assert tally.inner_text().startswith("0 of 2") and "3 eligible voters" in tally.inner_text()
    page.goto(f"/tasks/{task.pk}/")
    _decide(page, "Lyon is worth it")
    _at_inbox(page)
    assert "Your vote on “Board vote” is recorded." in page.get_by_role("status").first.inner_text()
    page.goto(f"/tasks/{task.pk}/")
    votes = page.locator(".votes")
    assert votes.locator(".tally").inner_text().startswith("1 of 2")
    assert "You voted approved" in votes.locator(".your-vote").inner_text()
    waiting = votes.locator(".waiting").inner_text()
    assert "fiona" in waiting and "lena" in waiting and "mike" not in waiting
    assert page.get_by_role("button", name="Approve", exact=True).count() == 0  # one vote each: no second ballot
    assert page.locator(".votes .tally").inner_text().startswith("1 of 2")
    task.refresh_from_db()
    assert task.status == HumanTaskStatus.OPEN  # one vote does not decide

    _switch(page, "fiona")
    _vote(page, task.pk, "Agreed")
    votes = page.locator(".votes")
    assert votes.locator(".tally").inner_text().startswith("2 of 2")
    assert "Decided: approved" in votes.locator(".decided").inner_text()
    cast = votes.locator("tbody").inner_text()
    assert "mike" in cast and "fiona" in cast and "Lyon is worth it" in cast
    instance.refresh_from_db()
    assert instance.status == "completed" and instance.data.get("status") == "approved"

    _switch(page, "lena")
    page.goto(f"/tasks/{task.pk}/")
    assert "Decided: approved" in page.locator(".votes .decided").inner_text()
    assert page.get_by_role("button", name="Approve", exact=True).count() == 0  # decided: nothing left to vote
