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


# --- task page: due/priority, delegate, reassign, override, comments, attachments; away page ---------------------

from datetime import timedelta  # noqa: E402

from django.core.files.uploadedfile import SimpleUploadedFile  # noqa: E402
from django.utils import timezone  # noqa: E402

from approvals.models import Delegation, Profile, StandIn, TaskAttachment, TaskComment  # noqa: E402
from processes.models import AuditEvent  # noqa: E402
from tests.approvals.conftest import fresh, grant_override  # noqa: E402


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "files")
    return tmp_path / "files"


def open_expense(users, key="EXP-1"):
    upload_sample("expense_approval")
    return start_expense(users["alice"], key=key).human_tasks.get(status=HumanTaskStatus.OPEN)


@pytest.mark.django_db
def test_task_page_shows_due_priority_and_overdue(users):
    task = open_expense(users)
    HumanTask.objects.filter(pk=task.pk).update(due_at=timezone.now() - timedelta(days=1), priority=7)
    page = client_for(users["mike"]).get(f"/tasks/{task.pk}/").content.decode()
    assert "<dt>Priority</dt><dd>7</dd>" in page and "Overdue" in page
    assert 'id="delegate-to"' in page and 'id="reassign-to"' not in page  # a candidate may delegate, not reassign
    assert 'id="f-override"' not in page  # no override permission


@pytest.mark.django_db
def test_delegate_from_the_task_page(users):
    task = open_expense(users)
    mike = client_for(users["mike"])
    unknown = mike.post(f"/tasks/{task.pk}/delegate/", {"to_user": "nobody", "reason": "away"})
    body = unknown.content.decode()
    assert unknown.status_code == 200 and 'aria-describedby="delegate-to-error"' in body
    assert "There is no active user named “nobody”." in body and 'value="nobody"' in body
    done = mike.post(f"/tasks/{task.pk}/delegate/", {"to_user": "max", "reason": "away"}, follow=True)
    assert done.redirect_chain[-1][0] == f"/tasks/{task.pk}/" and "Task delegated to max." in done.content.decode()
    assert HumanTask.objects.get(pk=task.pk).assignee == users["max"]
    assert Delegation.objects.get(task=task).reason == "away"
    assert 'id="delegate-to"' not in client_for(users["eve"]).get("/").content.decode()
    assert client_for(users["eve"]).post(f"/tasks/{task.pk}/delegate/", {"to_user": "eve"}).status_code == 404


@pytest.mark.django_db
def test_reassign_by_operator_and_manager_needs_reason(users):
    task = open_expense(users)
    HumanTask.objects.filter(pk=task.pk).update(assignee=users["mike"])
    Profile.objects.create(user=users["mike"], manager=users["sue"])
    oscar = client_for(users["oscar"])
    assert 'id="reassign-to"' in oscar.get(f"/tasks/{task.pk}/").content.decode()
    blank = oscar.post(f"/tasks/{task.pk}/reassign/", {"to_user": "max", "reason": " "}).content.decode()
    assert 'aria-describedby="reassign-reason-error"' in blank and "This field is required." in blank
    assert HumanTask.objects.get(pk=task.pk).assignee == users["mike"]
    assert 'id="reassign-to"' in client_for(users["sue"]).get(f"/tasks/{task.pk}/").content.decode()
    moved = client_for(users["sue"]).post(f"/tasks/{task.pk}/reassign/", {"to_user": "max", "reason": "balance"})
    assert moved.status_code == 302
    assert HumanTask.objects.get(pk=task.pk).assignee == users["max"]
    assert Delegation.objects.get(task=task, kind="reassign").by_user == users["sue"]
    denied = client_for(users["max"]).post(f"/tasks/{task.pk}/reassign/", {"to_user": "mike", "reason": "x"})
    assert denied.status_code == 200 and "only an operator or the assignee" in denied.content.decode()


@pytest.mark.django_db
def test_sod_denial_explained_and_overridden_from_the_page(users):
    upload_sample("expense_approval")
    task = start_expense(users["mike"], key="EXP-MIKE").human_tasks.get(status=HumanTaskStatus.OPEN)
    denied = client_for(users["mike"]).post(f"/tasks/{task.pk}/", {"decision": "approve", "reason": "ok"})
    body = denied.content.decode()
    assert 'id="sod-denied"' in body and "Separation of duties:" in body and "Someone else has to take" in body
    grant_override(users["mike"])
    mike = client_for(fresh(users["mike"]))
    page = mike.get(f"/tasks/{task.pk}/").content.decode()
    assert '<label for="f-override">Override separation of duties</label>' in page
    no_reason = mike.post(f"/tasks/{task.pk}/", {"decision": "approve", "reason": "ok", "override_sod": "on"})
    body = no_reason.content.decode()
    assert 'aria-describedby="f-override-reason-error"' in body and "Give a reason to override" in body
    assert HumanTask.objects.get(pk=task.pk).status == HumanTaskStatus.OPEN
    again = mike.post(f"/tasks/{task.pk}/", {"decision": "approve", "reason": "ok"}).content.decode()
    assert "You hold the right to override this rule" in again
    done = mike.post(f"/tasks/{task.pk}/", {"decision": "approve", "reason": "ok", "override_sod": "on",
                                            "override_reason": "CFO asked"})
    assert done.status_code == 302
    assert HumanTask.objects.get(pk=task.pk).status == HumanTaskStatus.COMPLETED
    override = AuditEvent.objects.get(instance_id=task.instance_id, command="sod_override")
    assert "CFO asked" in str(override.payload)


@pytest.mark.django_db
def test_comments_on_the_task_page(users):
    task = open_expense(users)
    mike = client_for(users["mike"])
    empty = mike.post(f"/tasks/{task.pk}/comments/", {"text": "  "}).content.decode()
    assert 'aria-describedby="comment-text-error"' in empty and "This field is required." in empty
    added = mike.post(f"/tasks/{task.pk}/comments/", {"text": "Where is the receipt?"}, follow=True)
    assert added.redirect_chain[-1][0] == f"/tasks/{task.pk}/#comments"
    page = added.content.decode()
    assert "Where is the receipt?" in page and "Comments (1)" in page and 'hx-post="' in page
    assert "task_comment" in page  # in the history too
    audrey = client_for(users["audrey"])
    read_only = audrey.get(f"/tasks/{task.pk}/").content.decode()
    assert "Where is the receipt?" in read_only and 'id="comment-text"' not in read_only
    refused = audrey.post(f"/tasks/{task.pk}/comments/", {"text": "hi"}).content.decode()
    assert "auditors may read" in refused and TaskComment.objects.count() == 1
    assert client_for(users["eve"]).post(f"/tasks/{task.pk}/comments/", {"text": "x"}).status_code == 404


@pytest.mark.django_db
def test_attachments_on_the_task_page(users, media, settings):
    task = open_expense(users)
    mike = client_for(users["mike"])
    missing = mike.post(f"/tasks/{task.pk}/attachments/", {}).content.decode()
    assert 'id="attach-file-error"' in missing and "Choose a file to attach." in missing
    settings.BATON_ATTACHMENT_MAX_BYTES = 10
    big = mike.post(f"/tasks/{task.pk}/attachments/", {"file": SimpleUploadedFile("big.txt", b"x" * 11)})
    assert "The file is 11 bytes; the largest allowed is 10 bytes." in big.content.decode()
    settings.BATON_ATTACHMENT_MAX_BYTES = 1024
    up = mike.post(f"/tasks/{task.pk}/attachments/", {"file": SimpleUploadedFile("receipt.txt", b"12 EUR")},
                   follow=True)
    page = up.content.decode()
    attachment = TaskAttachment.objects.get()
    assert f'href="/tasks/{task.pk}/attachments/{attachment.pk}/"' in page and "receipt.txt" in page
    assert "Attachments (1)" in page and attachment.uploaded_by == users["mike"]
    download = mike.get(f"/tasks/{task.pk}/attachments/{attachment.pk}/")
    assert download.status_code == 200 and b"".join(download.streaming_content) == b"12 EUR"
    disposition = download["Content-Disposition"]
    assert disposition.startswith("attachment;") and "receipt.txt" in disposition
    assert client_for(users["eve"]).get(f"/tasks/{task.pk}/attachments/{attachment.pk}/").status_code == 404
    assert mike.get(f"/tasks/{task.pk + 1}/attachments/{attachment.pk}/").status_code == 404
    (media / "attachments" / str(task.instance_id) / attachment.sha256).write_bytes(b"99 EUR")
    altered = mike.get(f"/tasks/{task.pk}/attachments/{attachment.pk}/")
    assert altered.status_code == 409 and "was altered" in altered.content.decode()


@pytest.mark.django_db
def test_away_page_sets_and_ends_a_stand_in(users):
    task = open_expense(users)
    mike = client_for(users["mike"])
    assert "Nobody stands in for you." in mike.get("/me/away/").content.decode()
    bad = mike.post("/me/away/", {"stand_in": "mike", "starts_at": "2026-13-01"}).content.decode()
    assert 'aria-describedby="away-from-help away-from-error"' in bad and "Enter a date as YYYY-MM-DD." in bad
    itself = mike.post("/me/away/", {"stand_in": "mike"}).content.decode()
    assert "A person cannot stand in for themself." in itself
    backwards = mike.post("/me/away/", {"stand_in": "eve", "starts_at": "2030-01-10", "ends_at": "2030-01-01"})
    assert "Must be after the start." in backwards.content.decode()
    done = mike.post("/me/away/", {"stand_in": "eve", "reason": "holiday"}, follow=True)
    assert "eve now stands in for you." in done.content.decode()
    standin = StandIn.objects.get(user=users["mike"])
    assert standin.stand_in == users["eve"] and standin.ends_at is None
    eve_page = client_for(users["eve"]).get("/me/away/").content.decode()
    assert "You stand in for" in eve_page and f'href="/tasks/{task.pk}/"' in eve_page and "for mike" in eve_page
    assert "Acting for mike" in client_for(users["eve"]).get("/?tab=groups").content.decode()
    task_page = client_for(users["eve"]).get(f"/tasks/{task.pk}/").content.decode()
    assert "You are acting for <strong>mike</strong>" in task_page
    assert client_for(users["fiona"]).post(f"/me/away/{standin.pk}/end/").status_code == 404
    assert mike.post(f"/me/away/{standin.pk}/end/").status_code == 302
    assert StandIn.objects.get(pk=standin.pk).ends_at is not None
    assert client_for(users["eve"]).get(f"/tasks/{task.pk}/").status_code == 404


def test_start_page_lists_processes_and_shows_the_chosen_form_alone(users):
    upload_sample("expense_approval")
    upload_sample("parallel_approvals")
    alice = client_for(users["alice"])
    every = alice.get("/start/").content.decode()
    assert 'href="/start/?process=expense_approval"' in every and 'href="/start/?process=parallel_approvals"' in every
    assert every.count('name="process_key"') == 2  # without a choice, every form
    one = alice.get("/start/?process=expense_approval").content.decode()
    assert one.count('name="process_key"') == 1 and 'value="expense_approval"' in one
    assert 'aria-current="page">Expense approval<' in one and 'href="/start/">Show every process<' in one
    refused = alice.post("/start/", {"process_key": "expense_approval", "employee": "A"}).content.decode()
    assert refused.count('name="process_key"') == 1  # a refused form comes back alone, with its errors
