"""Comments and attachments on a task: who may read and write, the audit events, the stored file and its hash."""
from __future__ import annotations

import hashlib

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone

from approvals import discussion, services
from approvals.models import StandIn, TaskAttachment, TaskComment
from core.errors import Conflict, NotFound, PermissionDenied, ValidationError
from processes import services as engine
from processes.audit import audit_verify, instance_chain
from processes.models import AuditEvent, HumanTaskStatus
from tests.approvals.conftest import open_task, upload_sample

EXPENSE = {"employee": "Alice", "amount": 120, "category": "travel", "description": "Train"}
PDF = b"%PDF-1.4 receipt " * 100


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "files")
    return tmp_path / "files"


@pytest.fixture
def task(users):
    upload_sample("expense_approval")
    instance = engine.instance_start(process_key="expense_approval", actor=users["alice"], business_key="EXP-7",
                                     data=EXPENSE)
    return open_task(instance, "manager_approval")


def events(task, command):
    return list(AuditEvent.objects.filter(instance_id=task.instance_id, command=command).order_by("seq"))


@pytest.mark.django_db
def test_comment_is_stored_and_audited(users, task):
    comment = discussion.comment_add(human_task_id=task.pk, actor=users["mike"], text="  Receipt looks fine.  ")
    assert comment.body == "Receipt looks fine." and comment.author == users["mike"]
    assert list(discussion.comments_for(task)) == [comment]
    [event] = events(task, "task_comment")
    assert event.payload == {"comment_id": comment.pk, "text": "Receipt looks fine."}
    assert event.actor == users["mike"] and event.element_id == "manager_approval" and event.task_id == task.task_id
    assert audit_verify(chain=instance_chain(task.instance_id)) == []


@pytest.mark.django_db
def test_comment_needs_text(users, task):
    with pytest.raises(ValidationError) as caught:
        discussion.comment_add(human_task_id=task.pk, actor=users["mike"], text="   ")
    assert caught.value.details == [{"field": "text", "message": "This field is required."}]
    assert not TaskComment.objects.exists() and events(task, "task_comment") == []


@pytest.mark.django_db
def test_who_may_write(users, task):
    with pytest.raises(NotFound):  # eve cannot see the task at all
        discussion.comment_add(human_task_id=task.pk, actor=users["eve"], text="hi")
    with pytest.raises(PermissionDenied) as caught:  # auditors read only
        discussion.comment_add(human_task_id=task.pk, actor=users["audrey"], text="hi")
    assert caught.value.code == "read_only" and "auditors" in caught.value.message
    with pytest.raises(PermissionDenied):
        discussion.attachment_add(human_task_id=task.pk, actor=users["audrey"], filename="a.txt",
                                  content_type="text/plain", data=b"x")
    assert not default_storage.exists(f"attachments/{task.instance_id}/{hashlib.sha256(b'x').hexdigest()}")
    discussion.comment_add(human_task_id=task.pk, actor=users["oscar"], text="operator note")
    StandIn.objects.create(user=users["lena"], stand_in=users["eve"], starts_at=timezone.now())
    task.candidate_groups = ["Legal"]
    task.save(update_fields=["candidate_groups"])
    discussion.comment_add(human_task_id=task.pk, actor=users["eve"], text="for lena")  # a stand-in
    assert [c.body for c in discussion.comments_for(task)] == ["operator note", "for lena"]
    assert len(events(task, "task_comment")) == 2


@pytest.mark.django_db
def test_completed_task_takes_comments_but_cancelled_instance_does_not(users, task):
    services.task_decide(human_task_id=task.pk, actor=users["mike"], decision="approve", data={"reason": "ok"})
    task.refresh_from_db()
    assert task.status == HumanTaskStatus.COMPLETED
    discussion.comment_add(human_task_id=task.pk, actor=users["mike"], text="paid?")
    assert [c.body for c in discussion.comments_for(task)] == ["paid?"]
    other = engine.instance_start(process_key="expense_approval", actor=users["alice"], business_key="EXP-8",
                                  data=EXPENSE)
    cancelled = open_task(other, "manager_approval")
    engine.instance_cancel(instance_id=other.pk, actor=users["oscar"], reason="withdrawn")
    with pytest.raises(Conflict) as caught:
        discussion.comment_add(human_task_id=cancelled.pk, actor=users["mike"], text="too late")
    assert caught.value.code == "instance_cancelled" and not TaskComment.objects.filter(task=cancelled).exists()


@pytest.mark.django_db
def test_attachment_stored_by_hash_and_audited(users, task, media):
    sha = hashlib.sha256(PDF).hexdigest()
    attachment = discussion.attachment_add(human_task_id=task.pk, actor=users["mike"], filename="../x/receipt.pdf",
                                           content_type="application/pdf", data=PDF)
    assert (attachment.filename, attachment.size, attachment.sha256) == ("receipt.pdf", len(PDF), sha)
    stored = media / "attachments" / str(task.instance_id) / sha
    assert stored.read_bytes() == PDF
    [event] = events(task, "task_attachment")
    assert event.payload == {"attachment_id": attachment.pk, "filename": "receipt.pdf", "size": len(PDF),
                             "sha256": sha}
    assert "receipt" not in str(task.instance.data)  # not in task data
    opened = discussion.attachment_open(attachment_id=attachment.pk, actor=users["audrey"])  # auditors read
    assert opened.file.read() == PDF and opened.attachment == attachment
    opened.file.close()
    again = discussion.attachment_add(human_task_id=task.pk, actor=users["mike"], filename="copy.pdf",
                                      content_type="application/pdf", data=PDF)
    assert again.sha256 == sha and list(stored.parent.iterdir()) == [stored]  # same bytes stored once
    assert list(discussion.attachments_for(task)) == [attachment, again]


@pytest.mark.django_db
def test_tampered_or_missing_file_is_refused(users, task, media):
    attachment = discussion.attachment_add(human_task_id=task.pk, actor=users["mike"], filename="r.pdf",
                                           content_type="application/pdf", data=PDF)
    stored = media / "attachments" / str(task.instance_id) / attachment.sha256
    stored.write_bytes(PDF.replace(b"receipt", b"RECEIPT"))
    with pytest.raises(Conflict) as caught:
        discussion.attachment_open(attachment_id=attachment.pk, actor=users["mike"])
    assert caught.value.code == "attachment_altered" and "SHA-256" in caught.value.message
    stored.unlink()
    with pytest.raises(Conflict) as caught:
        discussion.attachment_open(attachment_id=attachment.pk, actor=users["mike"])
    assert caught.value.code == "attachment_missing"


@pytest.mark.django_db
def test_attachment_visibility(users, task):
    attachment = discussion.attachment_add(human_task_id=task.pk, actor=users["mike"], filename="r.pdf",
                                           content_type="application/pdf", data=PDF)
    with pytest.raises(NotFound):
        discussion.attachment_open(attachment_id=attachment.pk, actor=users["eve"])
    with pytest.raises(NotFound):  # the URL names another task
        discussion.attachment_open(attachment_id=attachment.pk, actor=users["mike"], human_task_id=task.pk + 1)
    with pytest.raises(NotFound):
        discussion.attachment_add(human_task_id=task.pk, actor=users["eve"], filename="a", content_type="",
                                  data=b"x")


@pytest.mark.django_db
def test_size_limit(users, task, settings):
    settings.BATON_ATTACHMENT_MAX_BYTES = 1024
    with pytest.raises(ValidationError) as caught:
        discussion.attachment_add(human_task_id=task.pk, actor=users["mike"], filename="big.bin",
                                  content_type="", data=b"x" * 2048)
    assert caught.value.details == [{"field": "file", "message": "The file is 2 KiB; the largest allowed is 1 KiB."}]
    with pytest.raises(ValidationError) as caught:
        discussion.attachment_add(human_task_id=task.pk, actor=users["mike"], filename="empty.bin",
                                  content_type="", data=b"")
    assert caught.value.details[0]["message"] == "The file is empty."
    assert not TaskAttachment.objects.exists() and events(task, "task_attachment") == []
    assert not default_storage.exists(f"attachments/{task.instance_id}")


def api_for(user):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.mark.django_db
def test_api_comments_and_attachments(users, task, media, settings):
    from django.core.files.uploadedfile import SimpleUploadedFile

    mike = api_for(users["mike"])
    base = f"/api/v1/tasks/{task.pk}"
    created = mike.post(f"{base}/comments/", {"text": "ok?"}, format="json")
    assert created.status_code == 201 and created.json()["text"] == "ok?" and created.json()["author"] == "mike"
    assert [c["text"] for c in mike.get(f"{base}/comments/").json()["results"]] == ["ok?"]
    assert mike.post(f"{base}/comments/", {"text": ""}, format="json").status_code == 422
    assert api_for(users["audrey"]).post(f"{base}/comments/", {"text": "x"}, format="json").status_code == 403
    assert api_for(users["eve"]).get(f"{base}/comments/").status_code == 404
    up = mike.post(f"{base}/attachments/", {"file": SimpleUploadedFile("q.txt", b"quote")}, format="multipart")
    assert up.status_code == 201 and up.json()["sha256"] == hashlib.sha256(b"quote").hexdigest()
    att = up.json()["id"]
    listed = api_for(users["audrey"]).get(f"{base}/attachments/").json()["results"]
    assert [a["filename"] for a in listed] == ["q.txt"]
    download = api_for(users["audrey"]).get(f"{base}/attachments/{att}/")
    assert download.status_code == 200 and b"".join(download.streaming_content) == b"quote"
    assert 'filename="q.txt"' in download["Content-Disposition"]
    assert mike.post(f"{base}/attachments/", {}, format="multipart").json()["details"][0]["field"] == "file"
    settings.BATON_ATTACHMENT_MAX_BYTES = 3
    big = mike.post(f"{base}/attachments/", {"file": SimpleUploadedFile("b.txt", b"12345")}, format="multipart")
    assert big.status_code == 422 and "largest allowed is 3 bytes" in big.json()["details"][0]["message"]
    (media / "attachments" / str(task.instance_id) / hashlib.sha256(b"quote").hexdigest()).write_bytes(b"QUOTE")
    altered = mike.get(f"{base}/attachments/{att}/")
    assert altered.status_code == 409 and altered.json()["code"] == "attachment_altered"
    assert api_for(users["eve"]).get(f"{base}/attachments/{att}/").status_code == 404
