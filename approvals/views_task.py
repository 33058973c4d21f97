"""The task page and what one does there: decide, claim/release, delegate, reassign, comment, attach, download.

Every form is a plain POST that redirects back (htmx only enhances); a
refused command re-renders the page with the error next to its form. A task
one may not see is 404, the same as a missing one.
"""
from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from core.errors import BatonError, NotFound, ValidationError
from processes.models import HumanTaskStatus

from . import discussion
from . import forms_render as fr
from . import services
from .diagram import diagram_marks
from .people import active_user, active_usernames, manager_of
from .selectors import acting_for, is_candidate, roles_of, task_get_for

SOD = "separation_of_duties"
LABELS = {"instance_start": "Started", "task_claim": "Claimed", "task_release": "Released",
          "task_delegate": "Delegated", "task_reassign": "Reassigned", "task_complete": "Completed",
          "task_comment": "Commented", "task_attachment": "Attached a file",
          "sod_denied": "Refused (separation of duties)", "sod_override": "Overrode separation of duties",
          "task_vote": "Voted", "vote_open": "Vote opened", "instance_cancel": "Cancelled",
          "instance_suspend": "Suspended", "instance_resume": "Resumed"}


def _task_or_404(user, pk):
    try:
        return task_get_for(user=user, human_task_id=pk)
    except NotFound:
        raise Http404("task not found") from None


def _rights(user, task, represented) -> dict[str, bool]:
    """Which forms to show (the services decide again, under the lock)."""
    is_open = task.status == HumanTaskStatus.OPEN
    operator = bool(roles_of(user) & {"operator", "admin"})
    own = task.assignee_id == user.pk or (task.assignee_id is None and is_candidate(user, task))
    manages = bool(is_open and not operator and task.assignee_id is not None
                   and getattr(manager_of(task.assignee), "pk", None) == user.pk)
    return {"delegate": is_open and (own or represented is not None or operator),
            "reassign": is_open and (operator or manages),
            "override": is_open and user.has_perm(services.OVERRIDE_PERMISSION),
            "discuss": discussion.may_discuss(user, task)}


def _field_errors(exc: ValidationError) -> dict[str, str]:
    errors, general = fr.errors_by_field(exc.details)
    if general or not errors:
        errors.setdefault("form", " ".join(general) or exc.message)
    return errors


def _history(instance) -> list:
    """The instance's audit events, oldest first, each with a plain-words ``label`` for its command."""
    events = list(instance.audit_events.order_by("seq"))
    for event in events:
        event.label = LABELS.get(event.command, event.command.replace("_", " ").capitalize())
    return events


def _task_page(request, task, *, status=200, decide=None, forms=None):
    """Render the task page; ``decide`` and ``forms`` carry posted values and errors back to their forms."""
    decide = decide or {}
    errors = decide.get("errors") or {}
    schema = task.form_schema
    instance = task.instance
    represented = acting_for(request.user, task)
    users = active_usernames(exclude=request.user)
    context = {
        "task": task, "instance": instance, "is_open": task.status == HumanTaskStatus.OPEN,
        "fields": fr.fields_for(schema, task.form_ui, decide.get("values"), errors, skip=(fr.DECISION, fr.REASON)),
        "decisions": fr.decision_options(schema), "decision_error": errors.get(fr.DECISION, ""),
        "reason": decide.get("reason", ""), "reason_error": errors.get(fr.REASON, ""),
        "general_errors": decide.get("general", ()), "sod_denied": decide.get("code") == SOD,
        "override": decide.get("override", False), "override_reason": decide.get("override_reason", ""),
        "override_error": errors.get("override_reason", ""),
        "acting_for": represented, "rights": _rights(request.user, task, represented),
        "forms": forms or {}, "users": users, "max_bytes": discussion.size_text(discussion.attachment_max_bytes()),
        "comments": discussion.comments_for(task), "attachments": discussion.attachments_for(task),
        "history": _history(instance), "diagram": diagram_marks(instance, current=task.element_id), "now": timezone.now(),
    }
    return render(request, "approvals/task.html", context, status=status)


@login_required
def task_page(request, pk):
    task = _task_or_404(request.user, pk)
    if request.method != "POST":
        return _task_page(request, task)
    data = fr.data_from_post(task.form_schema, request.POST, skip=(fr.DECISION, fr.REASON))
    reason = request.POST.get("reason", "").strip()
    decision = request.POST.get("decision", "").strip()
    override = request.POST.get("override_sod") == "on"
    override_reason = request.POST.get("override_reason", "").strip()
    state = {"values": data, "reason": reason, "override": override, "override_reason": override_reason}
    if reason and fr.REASON in fr._properties(task.form_schema):
        data[fr.REASON] = reason
    if override and not override_reason:
        errors = {"override_reason": "Give a reason to override separation of duties."}
        return _task_page(request, task, decide={**state, "errors": errors})
    try:
        decided = services.task_decide(human_task_id=task.pk, actor=request.user, data=data, decision=decision,
                                       reason=reason, override_reason=override_reason if override else "")
    except ValidationError as exc:
        errors, general = fr.errors_by_field(exc.details)
        return _task_page(request, task, decide={**state, "errors": errors, "general": general or [exc.message]})
    except NotFound:
        raise Http404("task not found") from None
    except BatonError as exc:
        return _task_page(request, task, decide={**state, "general": [exc.message], "code": exc.code})
    name = task.name or task.element_id
    still_open = decided.status == HumanTaskStatus.OPEN  # a vote that did not decide the step
    messages.success(request, f"Your vote on “{name}” is recorded." if still_open else f"“{name}” completed.")
    return redirect("inbox")


def _after(request, task, done: str):
    """Back to the task after a command, or to the inbox if one no longer sees it (e.g. after delegating)."""
    messages.success(request, done)
    try:
        task_get_for(user=request.user, human_task_id=task.pk)
    except NotFound:
        return redirect("inbox")
    return redirect("task", pk=task.pk)


@login_required
@require_POST
def task_claim(request, pk):
    task = _task_or_404(request.user, pk)
    action = services.task_release if request.POST.get("action") == "release" else services.task_claim
    try:
        action(human_task_id=task.pk, actor=request.user)
        messages.success(request, "Task released." if action is services.task_release else "Task claimed.")
    except NotFound:
        raise Http404("task not found") from None
    except BatonError as exc:
        messages.error(request, exc.message)
    return redirect("task", pk=task.pk)


def _handover(request, pk, form: str):
    """Delegate or reassign (``form``) to the posted ``to_user`` with the posted ``reason``."""
    task = _task_or_404(request.user, pk)
    to_name, reason = request.POST.get("to_user", "").strip(), request.POST.get("reason", "").strip()
    to_user = active_user(to_name)
    command = services.task_delegate if form == "delegate" else services.task_reassign
    try:
        command(human_task_id=task.pk, actor=request.user, to_user=to_user, reason=reason)
    except NotFound:
        raise Http404("task not found") from None
    except ValidationError as exc:
        errors = _field_errors(exc)
        if to_name and "to_user" in errors:
            errors["to_user"] = f"There is no active user named “{to_name}”."
        return _task_page(request, task, forms={form: {"to_user": to_name, "reason": reason, "errors": errors}})
    except BatonError as exc:
        return _task_page(request, task, forms={form: {"to_user": to_name, "reason": reason,
                                                       "errors": {"form": exc.message}}})
    verb = "delegated" if form == "delegate" else "reassigned"
    return _after(request, task, f"Task {verb} to {to_user.get_username()}.")


@login_required
@require_POST
def task_delegate(request, pk):
    return _handover(request, pk, "delegate")


@login_required
@require_POST
def task_reassign(request, pk):
    return _handover(request, pk, "reassign")


@login_required
@require_POST
def task_comment(request, pk):
    task = _task_or_404(request.user, pk)
    text = request.POST.get("text", "")
    try:
        discussion.comment_add(human_task_id=task.pk, actor=request.user, text=text)
    except NotFound:
        raise Http404("task not found") from None
    except ValidationError as exc:
        return _task_page(request, task, forms={"comment": {"text": text, "errors": _field_errors(exc)}})
    except BatonError as exc:
        return _task_page(request, task, forms={"comment": {"text": text, "errors": {"form": exc.message}}})
    messages.success(request, "Comment added.")
    return redirect(reverse("task", args=[task.pk]) + "#comments")


@login_required
@require_POST
def task_attach(request, pk):
    task = _task_or_404(request.user, pk)
    upload = request.FILES.get("file")
    try:
        if upload is None:
            raise ValidationError("choose a file", details=[{"field": "file", "message": "Choose a file to attach."}])
        discussion.attachment_check_size(upload.size)
        discussion.attachment_add(human_task_id=task.pk, actor=request.user, filename=upload.name,
                                  content_type=upload.content_type or "", data=upload.read())
    except NotFound:
        raise Http404("task not found") from None
    except ValidationError as exc:
        return _task_page(request, task, forms={"attach": {"errors": _field_errors(exc)}})
    except BatonError as exc:
        return _task_page(request, task, forms={"attach": {"errors": {"form": exc.message}}})
    messages.success(request, f"Attached {upload.name}.")
    return redirect(reverse("task", args=[task.pk]) + "#attachments")


@login_required
def task_attachment(request, pk, attachment_pk):
    try:
        opened = discussion.attachment_open(attachment_id=attachment_pk, actor=request.user, human_task_id=pk)
    except NotFound:
        raise Http404("attachment not found") from None
    except BatonError as exc:
        return render(request, "approvals/task/attachment_error.html", {"message": exc.message, "task_id": pk},
                      status=exc.status)
    # Always a download of opaque bytes: never rendered inline, whatever type the uploader claimed.
    return FileResponse(opened.file, as_attachment=True, filename=opened.attachment.filename,
                        content_type="application/octet-stream")
