"""The conversation on a task: comments and attachments.

Who reads: everyone who may see the task (``selectors.task_get_for``; anyone
else gets ``NotFound``, as if it did not exist). Who writes: the people whose
task it is - a candidate, the assignee, whoever completed it, a stand-in of
one of them, the requester (starter) of the instance - and operators/admins.
Auditors (and managers who only see a report's task) read only.

Comments and files may be added to open and completed tasks (a question
after the decision is still part of the case), but not once the instance was
cancelled: a cancelled case is closed for good (``Conflict(code=
"instance_cancelled")``).

Each addition locks the instance (the engine's lock order: instance first)
and appends one event to its audit chain in the same transaction:
``task_comment`` (``comment_id``, ``text``) or ``task_attachment``
(``attachment_id``, ``filename``, ``size``, ``sha256``). Files live outside
task data in Django's default storage under ``attachments/<instance>/<sha256>``
(content-addressed: the same bytes twice are stored once); reading one
re-hashes it and refuses a file whose bytes no longer match the recorded hash.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import IO, Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import QuerySet

from core.errors import Conflict, NotFound, PermissionDenied, ValidationError
from processes import services as engine
from processes.audit import AuditEntry
from processes.models import HumanTask, InstanceStatus, ProcessInstance
from processes.persistence import CommandRun

from .models import TaskAttachment, TaskComment
from .selectors import acting_for, is_candidate, roles_of, task_get_for

COMMENT_MAX_CHARS = 10_000
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
CHUNK = 64 * 1024


def attachment_max_bytes() -> int:
    """The largest attachment accepted (``BATON_ATTACHMENT_MAX_BYTES``, default 10 MiB)."""
    return int(getattr(settings, "BATON_ATTACHMENT_MAX_BYTES", DEFAULT_MAX_BYTES))


def size_text(size: int) -> str:
    """A size for people: 512 bytes, 3.4 KiB, 10 MiB."""
    if size < 1024:
        return f"{size} byte{'s' if size != 1 else ''}"
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}".replace(".0 ", " ")
    return str(size)  # pragma: no cover - unreachable


def attachment_check_size(size: int) -> None:
    """Refuse an empty file or one over the limit (callers check before reading a large upload)."""
    limit = attachment_max_bytes()
    if size <= 0:
        raise ValidationError("the file is empty", details=[{"field": "file", "message": "The file is empty."}])
    if size > limit:
        raise ValidationError(
            f"the file is larger than {size_text(limit)}",
            details=[{"field": "file", "message":
                      f"The file is {size_text(size)}; the largest allowed is {size_text(limit)}."}])


def may_discuss(user: Any, task: HumanTask) -> bool:
    """True if ``user`` (who sees ``task``) may comment on it or attach files; auditors only read."""
    if roles_of(user) & {"operator", "admin"}:
        return True
    pk = user.pk
    if pk in (task.assignee_id, task.completed_by_id, task.instance.started_by_id) or is_candidate(user, task):
        return True
    return acting_for(user, task) is not None


def comments_for(task: HumanTask) -> QuerySet[TaskComment]:
    """The task's comments, oldest first, with their authors (one query)."""
    return TaskComment.objects.filter(task=task).select_related("author").order_by("created_at", "id")


def attachments_for(task: HumanTask) -> QuerySet[TaskAttachment]:
    """The task's attachments, oldest first, with who uploaded them (one query)."""
    return TaskAttachment.objects.filter(task=task).select_related("uploaded_by").order_by("created_at", "id")


def _writer_task(human_task_id: int, actor: Any) -> HumanTask:
    """Return the task if the actor sees it (else ``NotFound``) and may write on it (else ``PermissionDenied``)."""
    task = task_get_for(user=actor, human_task_id=human_task_id)
    if not may_discuss(actor, task):
        if "auditor" in roles_of(actor):
            raise PermissionDenied("auditors may read the comments and files of a task but not add to them",
                                   code="read_only")
        raise PermissionDenied("only the people working on this task, its requester and operators may add "
                               "comments or files", code="not_permitted")
    return task


def _writable(human_task_id: int, actor: Any) -> tuple[ProcessInstance, HumanTask]:
    """Check visibility and the right to write, then lock the task's instance (call inside a transaction)."""
    task = _writer_task(human_task_id, actor)
    instance = engine._lock_instance(task.instance_id)
    if instance.status == InstanceStatus.CANCELLED:
        raise Conflict(f"instance {instance.pk} was cancelled: its tasks take no more comments or files",
                       code="instance_cancelled")
    task = HumanTask.objects.get(pk=task.pk)
    task.instance = instance
    return instance, task


def _record(instance: ProcessInstance, actor: Any, task: HumanTask, command: str, payload: dict) -> None:
    CommandRun.status_only(instance, actor, AuditEntry(command, task_id=task.task_id, element_id=task.element_id,
                                                       payload=payload), instance.status)


def comment_add(*, human_task_id: int, actor: Any, text: str) -> TaskComment:
    """Add a comment to a task the actor may see and work on; audited as ``task_comment`` with its text."""
    text = (text or "").strip()
    if not text:
        raise ValidationError("write a comment", details=[{"field": "text", "message": "This field is required."}])
    if len(text) > COMMENT_MAX_CHARS:
        raise ValidationError("the comment is too long", details=[{"field": "text", "message":
                              f"At most {COMMENT_MAX_CHARS} characters (this one has {len(text)})."}])
    with engine._busy_as_conflict(), transaction.atomic():
        instance, task = _writable(human_task_id, actor)
        comment = TaskComment.objects.create(task=task, author=actor, body=text)
        _record(instance, actor, task, "task_comment", {"comment_id": comment.pk, "text": text})
    return comment


def _clean_filename(filename: str) -> str:
    name = os.path.basename((filename or "").replace("\\", "/")).strip().replace("\x00", "")
    if not name or name in (".", ".."):
        raise ValidationError("the file has no name", details=[{"field": "file", "message": "The file has no name."}])
    if len(name) > 255:
        stem, ext = os.path.splitext(name)
        name = stem[:255 - len(ext[:20])] + ext[:20]
    return name


def _storage_name(instance_id: int, sha256: str) -> str:
    return f"attachments/{instance_id}/{sha256}"


def _hash_of(handle: IO[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: handle.read(CHUNK), b""):
        digest.update(chunk)
    return digest.hexdigest()


def _store(name: str, data: bytes, sha256: str) -> None:
    """Write the bytes under their hash; keep an intact copy, replace a damaged one."""
    if default_storage.exists(name):
        with default_storage.open(name, "rb") as handle:
            if _hash_of(handle) == sha256:
                return
        default_storage.delete(name)
    saved = default_storage.save(name, ContentFile(data))
    if saved != name:  # pragma: no cover - a concurrent writer of the same bytes; the content is identical
        default_storage.delete(saved)


def attachment_add(*, human_task_id: int, actor: Any, filename: str, content_type: str,
                   data: bytes) -> TaskAttachment:
    """Attach a file to a task the actor may see and work on; audited as ``task_attachment`` with its SHA-256.

    The size limit is ``BATON_ATTACHMENT_MAX_BYTES``. The bytes are stored
    before the row (an unreferenced file after a failed command is harmless:
    it is content-addressed and re-used by the next upload of the same bytes).
    """
    filename = _clean_filename(filename)
    attachment_check_size(len(data))
    task = _writer_task(human_task_id, actor)  # no file is stored for someone who may not attach
    sha256 = hashlib.sha256(data).hexdigest()
    _store(_storage_name(task.instance_id, sha256), data, sha256)
    with engine._busy_as_conflict(), transaction.atomic():
        instance, task = _writable(human_task_id, actor)
        attachment = TaskAttachment.objects.create(
            task=task, uploaded_by=actor, filename=filename, content_type=(content_type or "")[:255],
            size=len(data), sha256=sha256)
        _record(instance, actor, task, "task_attachment", {
            "attachment_id": attachment.pk, "filename": filename, "size": len(data), "sha256": sha256})
    return attachment


@dataclass
class OpenedAttachment:
    """An attachment whose stored bytes were checked against its SHA-256; ``file`` is at offset 0."""

    attachment: TaskAttachment
    file: IO[bytes]


def attachment_open(*, attachment_id: int, actor: Any, human_task_id: int | None = None) -> OpenedAttachment:
    """Open an attachment of a task the actor may see (else ``NotFound``), verifying its hash first.

    A stored file whose bytes no longer hash to the recorded SHA-256 (or that
    is gone) is refused with ``Conflict`` (``attachment_altered`` /
    ``attachment_missing``). Pass ``human_task_id`` to require the attachment
    to belong to that task (URLs name both).
    """
    attachment = TaskAttachment.objects.select_related("task", "uploaded_by").filter(pk=attachment_id).first()
    if attachment is None or (human_task_id is not None and attachment.task_id != human_task_id):
        raise NotFound(f"attachment {attachment_id} does not exist")
    try:
        task = task_get_for(user=actor, human_task_id=attachment.task_id)
    except NotFound:
        raise NotFound(f"attachment {attachment_id} does not exist") from None
    name = _storage_name(task.instance_id, attachment.sha256)
    try:
        handle = default_storage.open(name, "rb")
    except FileNotFoundError:
        raise Conflict(f"the stored file of attachment {attachment_id} is missing",
                       code="attachment_missing") from None
    if _hash_of(handle) != attachment.sha256:
        handle.close()
        raise Conflict(f"the stored file of attachment {attachment_id} was altered: its SHA-256 no longer "
                       "matches the one recorded when it was uploaded", code="attachment_altered")
    handle.seek(0)
    return OpenedAttachment(attachment=attachment, file=handle)
