"""Server-rendered pages: inbox, task, start, instance. Thin: parse, call one service/selector, render."""
from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from bpmn.selectors import definition_list
from core.errors import BatonError, NotFound, ValidationError
from processes import services as engine
from processes.models import HumanTaskStatus
from processes.selectors import definition_forms

from . import forms_render as fr
from . import services
from .forms import form_validate
from .diagram import diagram_marks
from .selectors import can_start, task_get_for, tasks_for

TABS = (("mine", "Mine"), ("groups", "My groups"), ("done", "Done"))


@login_required
def inbox(request):
    scope = request.GET.get("tab", "mine")
    scope = scope if scope in dict(TABS) else "mine"
    q = request.GET.get("q", "").strip()
    tabs = []
    for key, label in TABS:
        qs = tasks_for(user=request.user, scope=key)
        if q:
            qs = qs.filter(instance__business_key__icontains=q)
        tabs.append({"key": key, "label": label, "count": qs.count(), "active": key == scope})
    tasks = tasks_for(user=request.user, scope=scope)
    if q:
        tasks = tasks.filter(instance__business_key__icontains=q)
    tasks = tasks.order_by("-completed_at", "-created_at", "-id") if scope == "done" else tasks.order_by("-created_at", "-id")
    return render(request, "approvals/inbox.html", {"tabs": tabs, "tasks": tasks[:200], "scope": scope, "q": q})


def _task_or_404(user, pk):
    try:
        return task_get_for(user=user, human_task_id=pk)
    except NotFound:
        raise Http404("task not found") from None



def _task_page(request, task, values=None, errors=None, general=(), reason="", status=200):
    schema = task.form_schema
    fields = fr.fields_for(schema, task.form_ui, values, errors or {}, skip=(fr.DECISION, fr.REASON))
    instance = task.instance
    context = {
        "task": task, "instance": instance, "fields": fields, "decisions": fr.decision_options(schema),
        "decision_error": (errors or {}).get(fr.DECISION, ""), "reason": reason,
        "reason_error": (errors or {}).get(fr.REASON, ""), "general_errors": general,
        "history": instance.audit_events.order_by("seq"), "diagram": diagram_marks(instance),
        "is_open": task.status == HumanTaskStatus.OPEN,
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
    if reason and fr.REASON in fr._properties(task.form_schema):
        data[fr.REASON] = reason
    try:
        services.task_decide(human_task_id=task.pk, actor=request.user, data=data, decision=decision, reason=reason)
    except ValidationError as exc:
        errors, general = fr.errors_by_field(exc.details)
        return _task_page(request, task, data, errors, general or [exc.message], reason, status=200)
    except NotFound:
        raise Http404("task not found") from None
    except BatonError as exc:
        return _task_page(request, task, data, {}, [exc.message], reason, status=200)
    messages.success(request, f"“{task.name or task.element_id}” completed.")
    return redirect("inbox")


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


def _start_form(definition):
    meta = next((m for m in (definition.elements or {}).values()
                 if isinstance(m, dict) and m.get("type") == "startEvent" and isinstance(m.get("form"), dict)), None)
    if not meta:
        return None, None
    forms = definition_forms(definition)
    return forms.get(meta["form"].get("schema")), forms.get(meta["form"].get("ui_schema"))


@login_required
def start(request):
    definitions = [d for d in definition_list(latest_only=True) if can_start(user=request.user, process_key=d.process_key)]
    chosen_key = request.POST.get("process_key") or request.GET.get("process")
    entries = []
    for d in definitions:
        schema, ui = _start_form(d)
        entries.append({"definition": d, "schema": schema, "ui": ui, "fields": fr.fields_for(schema, ui, {}, {}),
                        "errors": [], "business_key": "", "raw": "{}"})
    if request.method == "POST":
        entry = next((e for e in entries if e["definition"].process_key == chosen_key), None)
        if entry is None:
            raise Http404("process not found")
        entry["business_key"] = request.POST.get("business_key", "").strip()
        data: dict = {}
        try:
            if entry["schema"]:
                data = fr.data_from_post(entry["schema"], request.POST)
                form_validate(entry["schema"], data)
            else:
                entry["raw"] = request.POST.get("data", "").strip() or "{}"
                try:
                    data = json.loads(entry["raw"])
                except ValueError as exc:
                    raise ValidationError("data must be JSON", details=[{"field": "", "message": f"Invalid JSON: {exc}"}])
            instance = engine.instance_start(process_key=chosen_key, actor=request.user,
                                             business_key=entry["business_key"], data=data)
        except BatonError as exc:
            errors, general = fr.errors_by_field(getattr(exc, "details", None) if isinstance(exc, ValidationError) else None)
            if entry["schema"]:
                entry["fields"] = fr.fields_for(entry["schema"], entry["ui"], data if isinstance(data, dict) else {}, errors)
            entry["errors"] = general or [exc.message]
            return render(request, "approvals/start.html", {"entries": entries})
        messages.success(request, f"Started {entry['definition'].name or chosen_key}.")
        return redirect("instance", pk=instance.pk)
    return render(request, "approvals/start.html", {"entries": entries})
