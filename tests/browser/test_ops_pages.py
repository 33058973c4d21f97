"""Designer and auditor pages in a real browser: a broken diagram's element errors, an instance's audit trail."""
from __future__ import annotations

from pathlib import Path

import pytest

from approvals.services import task_decide
from bpmn.models import ProcessDefinition
from processes import services
from processes.models import HumanTaskStatus
from tests.approvals.conftest import upload_sample

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
BROKEN = Path(__file__).resolve().parents[1] / "fixtures" / "bpmn" / "upload" / "broken_structure.bpmn"


def test_designer_uploads_a_broken_diagram_and_sees_each_element_error(people, new_page):
    page = new_page("dana")
    page.goto("/definitions/upload/")
    page.get_by_label("Files").set_input_files(str(BROKEN))
    page.get_by_role("button", name="Upload").click()
    errors = page.locator("table#upload-errors")
    errors.wait_for()
    rows = {row.locator("code").first.inner_text(): row.inner_text()
            for row in errors.locator("tbody tr").all() if row.locator("code").count()}
    assert "missing_end" in rows["to_nowhere"] and "ghost" in rows["from_nowhere"]
    assert "no outgoing" in rows["start"] and "no incoming" in rows["end"]
    assert page.get_by_role("alert").is_visible()
    described = page.get_by_label("Files").get_attribute("aria-describedby")
    assert "upload-error" in described.split()  # the error is tied to the file input
    assert not ProcessDefinition.objects.exists()


def test_auditor_follows_the_instance_page_to_its_audit_trail(people, new_page):
    upload_sample("expense_approval")
    instance = services.instance_start(process_key="expense_approval", actor=people["alice"], business_key="EXP-A1",
                                       data={"employee": "alice", "amount": 80, "category": "meals"})
    task = instance.human_tasks.get(element_id="manager_approval", status=HumanTaskStatus.OPEN)
    task_decide(human_task_id=task.pk, actor=people["mike"], data={"decision": "approve"}, decision="approve")
    page = new_page("audrey")
    page.goto(f"/instances/{instance.pk}/")
    assert page.locator("#instance-status").inner_text() == "Completed"
    page.get_by_role("link", name="Audit trail of this instance").click()
    page.wait_for_url(f"**/audit/instances/{instance.pk}/")
    trail = page.locator("main table").first.inner_text()
    for command in ("instance_start", "task_complete", "instance_complete"):
        assert command in trail, command
    assert "mike" in trail and "alice" in trail
    assert "Chain verification: OK." in page.locator("#audit-result").inner_text()
    # a requester's view of the same instance has no audit link, and the audit page is refused to her
    alice = new_page("alice")
    alice.goto(f"/instances/{instance.pk}/")
    assert alice.get_by_role("link", name="Audit trail of this instance").count() == 0
    assert alice.goto(f"/audit/instances/{instance.pk}/").status == 403
