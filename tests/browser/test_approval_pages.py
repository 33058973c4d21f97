"""The approval pages in a real browser: start, the diagram viewer, two approvers at once, visibility,
keyboard use and a phone-sized screen."""
from __future__ import annotations

import re

import pytest

from processes import services
from processes.models import HumanTask, HumanTaskStatus, ProcessInstance
from tests.approvals.conftest import upload_sample

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
EXPENSE = {"employee": "alice", "amount": 2400, "category": "it", "description": "New laptop"}


def _start(alice, key: str = "EXP-B1") -> ProcessInstance:
    return services.instance_start(process_key="expense_approval", actor=alice, business_key=key, data=EXPENSE)


def _open(instance: ProcessInstance, element_id: str) -> HumanTask:
    return instance.human_tasks.get(element_id=element_id, status=HumanTaskStatus.OPEN)


def _groups_tab(page) -> None:
    """Show the inbox tab of tasks offered to the user's groups."""
    page.get_by_role("link", name=re.compile(r"^My groups")).click()
    page.wait_for_url(re.compile(r"tab=groups"))


def _decide(page, reason: str, button: str = "Approve") -> None:
    """Fill the reason of the decision form (the one with the decision buttons) and press ``button``."""
    form = page.locator("form", has=page.get_by_role("button", name=button, exact=True))
    form.get_by_label("Reason").fill(reason)
    form.get_by_role("button", name=button, exact=True).click()


def _diagram_ready(page) -> None:
    page.wait_for_selector("#diagram[data-diagram-state=ready] svg")


def test_requester_starts_an_expense_and_sees_the_diagram(people, new_page):
    upload_sample("expense_approval")
    page = new_page("alice")
    script_errors = []
    page.on("pageerror", lambda error: script_errors.append(str(error)))
    page.get_by_role("link", name="Start").click()
    form = page.locator("section", has=page.get_by_role("heading", name=re.compile("Expense approval")))
    form.get_by_label("Business key").fill("EXP-WEB-1")
    form.get_by_label("Employee").fill("alice")
    form.get_by_label("Amount").fill("2400")
    form.get_by_label("Category").select_option("it")
    form.get_by_label("Description").fill("New laptop")
    form.get_by_role("button", name="Start").click()
    instance = ProcessInstance.objects.get(business_key="EXP-WEB-1")
    page.wait_for_url(f"**/instances/{instance.pk}/")
    assert page.locator("#instance-status").inner_text() == "Waiting" or instance.status in ("waiting", "running")
    _diagram_ready(page)
    manager = page.locator('#diagram .djs-element[data-element-id="manager_approval"]')
    assert "baton-active" in manager.get_attribute("class")
    assert page.locator("#diagram .djs-element.baton-done").count() >= 1  # the start event
    assert page.locator("#diagram .djs-element.baton-failed").count() == 0
    logo = page.locator("#diagram a.bjs-powered-by")  # bpmn.io's watermark, required by its licence
    assert logo.count() == 1 and logo.is_visible()
    assert re.fullmatch(r"https?://bpmn\.io/?", logo.get_attribute("href"))
    assert page.locator("#diagram-legend").inner_text().strip().startswith("Active: Manager approval")
    # keyboard buttons zoom the canvas
    before = page.evaluate("() => document.querySelector('#diagram .viewport').getAttribute('transform')")
    page.get_by_role("button", name="Zoom in").click()
    after = page.evaluate("() => document.querySelector('#diagram .viewport').getAttribute('transform')")
    assert after != before
    assert script_errors == []


@pytest.mark.parametrize(("reply", "shown"), [
    ({"status": 500, "body": "boom"}, "The diagram could not be loaded: the server answered 500"),
    ({"status": 200, "body": "<not-bpmn/>", "content_type": "application/xml"}, "could not be drawn"),
])
def test_viewer_says_clearly_when_the_diagram_cannot_be_shown(people, new_page, reply, shown):
    upload_sample("expense_approval")
    instance = _start(people["alice"])
    page = new_page("alice")
    page.route("**/diagram.bpmn", lambda route: route.fulfill(**reply))
    page.goto(f"/instances/{instance.pk}/")
    alert = page.locator("#diagram [role=alert]")
    alert.wait_for()
    assert shown in alert.inner_text()
    assert page.locator("#diagram-legend").inner_text().strip().startswith("Active: Manager approval")  # the text stays
    assert page.locator(".diagram-toolbar").is_hidden()  # no buttons for a diagram that is not there


def test_manager_and_finance_approve_at_the_same_time_in_two_browsers(people, new_page):
    upload_sample("expense_approval")
    instance = _start(people["alice"])
    mike, fiona = new_page("mike"), new_page("fiona")  # both logged in at once, separate cookies
    _groups_tab(fiona)
    assert fiona.get_by_role("link", name="Manager approval").count() == 0  # not Finance's task yet
    _groups_tab(mike)
    mike.get_by_role("link", name="Manager approval").first.click()
    mike.wait_for_url(re.compile(r"/tasks/\d+/$"))
    _decide(mike, "Needed for the new hire")
    mike.wait_for_url(re.compile(r"/$"))
    fiona.reload()
    fiona.get_by_role("link", name="Finance approval").first.click()
    fiona.wait_for_url(re.compile(r"/tasks/\d+/$"))
    _decide(fiona, "Within budget")
    fiona.wait_for_url(re.compile(r"/$"))
    instance.refresh_from_db()
    assert instance.status == "completed"
    mike.goto(f"/instances/{instance.pk}/")
    assert mike.locator("#instance-status").inner_text() == "Completed"
    history = mike.locator("#history").inner_text()
    assert history.count("task_complete") == 2 and "instance_complete" in history
    assert "Needed for the new hire" in history and "Within budget" in history and "approve" in history
    _diagram_ready(mike)
    assert mike.locator("#diagram .djs-element.baton-active").count() == 0
    finance = mike.locator('#diagram .djs-element[data-element-id="finance_approval"]')
    assert "baton-done" in finance.get_attribute("class")


def test_another_approver_gets_404_for_a_task_she_may_not_see(people, new_page):
    upload_sample("expense_approval")
    task = _open(_start(people["alice"]), "manager_approval")
    lena = new_page("lena")
    _groups_tab(lena)
    assert lena.get_by_role("link", name="Manager approval").count() == 0
    assert "EXP-B1" not in lena.locator("main").inner_text()
    response = lena.goto(f"/tasks/{task.pk}/")
    assert response.status == 404
    assert "Manager approval" not in lena.content() and "New laptop" not in lena.content()
    assert lena.goto(f"/instances/{task.instance_id}/diagram.bpmn").status == 404


def test_keyboard_reaches_the_first_task_and_opens_it(people, new_page):
    upload_sample("expense_approval")
    task = _open(_start(people["alice"]), "manager_approval")
    page = new_page("mike")
    _groups_tab(page)
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.className") == "skip"  # first stop: skip to content
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.id") == "main"
    target = page.get_by_role("link", name="Manager approval").first
    seen = []
    for _ in range(40):
        page.keyboard.press("Tab")
        seen.append(page.evaluate("() => document.activeElement.outerHTML.slice(0, 80)"))
        if target.evaluate("el => el === document.activeElement"):
            break
    else:
        pytest.fail(f"Tab never reached the first task link; focus went through {seen}")
    assert len(set(seen)) == len(seen)  # every press moved focus somewhere new
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/tasks/{task.pk}/")
    assert page.get_by_role("heading", level=1).inner_text() == "Manager approval"
    _diagram_ready(page)
    page.locator("#diagram").focus()
    before = page.evaluate("() => document.querySelector('#diagram .viewport').getAttribute('transform')")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("+")
    assert page.evaluate("() => document.querySelector('#diagram .viewport').getAttribute('transform')") != before


def test_task_page_fits_a_phone_screen(people, new_page):
    upload_sample("expense_approval")
    task = _open(_start(people["alice"]), "manager_approval")
    page = new_page("mike", viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
    page.goto(f"/tasks/{task.pk}/")
    _diagram_ready(page)
    width = page.evaluate("() => document.scrollingElement.scrollWidth")
    assert width <= 375 + 1, f"the page scrolls sideways: {width}px wide"
    assert page.get_by_role("button", name="Approve").is_visible()
    page.goto(f"/instances/{task.instance_id}/")
    _diagram_ready(page)
    assert page.evaluate("() => document.scrollingElement.scrollWidth") <= 375 + 1
