"""Web pages: login, inbox tabs, task form with field errors, start, instance, visibility."""
from __future__ import annotations

import pytest
from django.test import Client

from processes.models import HumanTask, HumanTaskStatus, ProcessInstance
from tests.approvals.conftest import upload_sample

EXPENSE = {"employee": "Alice", "amount": "120", "category": "travel", "description": "Train"}


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def start_expense(user, key="EXP-1") -> ProcessInstance:
    response = client_for(user).post("/start/", {"process_key": "expense_approval", "business_key": key, **EXPENSE})
    assert response.status_code == 302, response.content.decode()[:2000]
    instance = ProcessInstance.objects.get(business_key=key)
    assert response["Location"] == f"/instances/{instance.pk}/"
    return instance


@pytest.mark.django_db
def test_inbox_requires_login():
    response = Client().get("/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    page = Client().get("/login/")
    assert page.status_code == 200 and b'<label for="id_username">' in page.content


@pytest.mark.django_db
def test_expense_flow_through_the_pages(users):
    upload_sample("expense_approval")
    assert b"Expense approval" in client_for(users["alice"]).get("/start/").content
    instance = start_expense(users["alice"])
    assert client_for(users["alice"]).get(f"/instances/{instance.pk}/").status_code == 200
    task = instance.human_tasks.get(status=HumanTaskStatus.OPEN)

    mike = client_for(users["mike"])
    inbox = mike.get("/?tab=groups").content.decode()
    assert f"/tasks/{task.pk}/" in inbox and "My groups (1)" in inbox
    assert "EXP-1" in mike.get("/?tab=groups&q=EXP").content.decode()
    assert f"/tasks/{task.pk}/" not in mike.get("/?tab=groups&q=nothing").content.decode()
    page = mike.get(f"/tasks/{task.pk}/").content.decode()
    assert 'value="approve"' in page and 'value="reject"' in page and 'id="diagram"' in page

    missing = mike.post(f"/tasks/{task.pk}/", {"reason": "kept text"})
    assert missing.status_code == 200
    assert 'id="f-decision-error"' in missing.content.decode() and "kept text" in missing.content.decode()
    rejected = mike.post(f"/tasks/{task.pk}/", {"decision": "reject", "reason": ""})
    assert rejected.status_code == 200
    body = rejected.content.decode()
    assert 'aria-describedby="f-reason-error"' in body and "This field is required." in body

    approved = mike.post(f"/tasks/{task.pk}/", {"decision": "approve"}, follow=True)
    assert approved.redirect_chain[-1][0] == "/"
    assert "completed" in approved.content.decode()
    task.refresh_from_db()
    assert task.status == HumanTaskStatus.COMPLETED and task.decision == "approve"
    done = mike.get("/?tab=done").content.decode()
    assert f"/tasks/{task.pk}/" in done and "Done (1)" in done
    history = mike.get(f"/tasks/{task.pk}/").content.decode()
    assert "task_complete" in history or "instance_start" in history


@pytest.mark.django_db
def test_other_users_get_404(users):
    upload_sample("expense_approval")
    instance = start_expense(users["alice"])
    task = instance.human_tasks.get(status=HumanTaskStatus.OPEN)
    eve = client_for(users["eve"])
    assert eve.get(f"/tasks/{task.pk}/").status_code == 404
    assert eve.post(f"/tasks/{task.pk}/", {"decision": "approve"}).status_code == 404
    assert eve.get(f"/instances/{instance.pk}/").status_code == 404
    assert f"/tasks/{task.pk}/" not in eve.get("/?tab=groups").content.decode()


@pytest.mark.django_db
def test_requester_may_not_approve_own_expense(users):
    upload_sample("expense_approval")
    instance = start_expense(users["mike"], key="EXP-MIKE")
    task = instance.human_tasks.get(status=HumanTaskStatus.OPEN)
    response = client_for(users["mike"]).post(f"/tasks/{task.pk}/", {"decision": "approve", "reason": "mine"})
    assert response.status_code == 200
    body = response.content.decode()
    assert 'role="alert"' in body and "may not approve their own" in body and "mine" in body
    assert HumanTask.objects.get(pk=task.pk).status == HumanTaskStatus.OPEN


@pytest.mark.django_db
def test_claim_and_release(users):
    upload_sample("expense_approval")
    task = start_expense(users["alice"]).human_tasks.get(status=HumanTaskStatus.OPEN)
    mike = client_for(users["mike"])
    assert mike.post(f"/tasks/{task.pk}/claim/", {"action": "claim"}).status_code == 302
    assert HumanTask.objects.get(pk=task.pk).assignee == users["mike"]
    assert "Mine (1)" in mike.get("/").content.decode()
    mike.post(f"/tasks/{task.pk}/claim/", {"action": "release"})
    assert HumanTask.objects.get(pk=task.pk).assignee is None


@pytest.mark.django_db
def test_start_form_errors_are_shown(users):
    upload_sample("expense_approval")
    response = client_for(users["alice"]).post("/start/", {"process_key": "expense_approval", "employee": "A"})
    assert response.status_code == 200
    assert 'id="f-amount-error"' in response.content.decode()
