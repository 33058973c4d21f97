"""Server-rendered pages: inbox and start (task pages: views_task), away. Thin: parse, call, render."""
from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.utils import timezone
from django.views.decorators.http import require_POST
from django.shortcuts import redirect, render

from bpmn.selectors import definition_list
from core.errors import BatonError, NotFound, ValidationError
from processes import services as engine
from processes.selectors import definition_forms

from . import forms_render as fr
from .forms import form_validate
from .people import active_user, active_usernames, standin_end, standin_set, standins_of
from .inbox import InboxFilters, inbox_for, standin_tasks_for
from .selectors import can_start

TABS = (("mine", "Mine"), ("groups", "My groups"), ("done", "Done"))
SORTS = (("due", "Due date, soonest first"), ("-due", "Due date, latest first"),
         ("-priority", "Priority, highest first"), ("priority", "Priority, lowest first"),
         ("-created", "Newest first"), ("created", "Oldest first"))
DUES = (("overdue", "Overdue"), ("today", "Due today"), ("week", "Due within 7 days"))


@login_required
def inbox(request):
    filters = InboxFilters.from_params(request.GET)
    box = inbox_for(user=request.user, tab=request.GET.get("tab", "mine"), filters=filters,
                    page=request.GET.get("page", 1))
    params = filters.as_params()
    tabs = [{"key": key, "label": label, "count": box.counts[key], "active": key == box.tab,
             "query": urlencode({"tab": key, **params})} for key, label in TABS]
    context = {"box": box, "tabs": tabs, "scope": box.tab, "filters": filters, "sorts": SORTS, "dues": DUES,
               "page_query": urlencode({"tab": box.tab, **params}), "filtered": bool(params.keys() - {"sort"})}
    return render(request, "approvals/inbox.html", context)


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
            entry["business_key_error"] = errors.pop("business_key", "")
            if entry["schema"]:
                entry["fields"] = fr.fields_for(entry["schema"], entry["ui"], data if isinstance(data, dict) else {}, errors)
            entry["errors"] = general or ([] if entry["business_key_error"] else [exc.message])
            return _start_page(request, entries, chosen_key)
        messages.success(request, f"Started {entry['definition'].name or chosen_key}.")
        return redirect("instance", pk=instance.pk)
    return _start_page(request, entries, chosen_key)


def _start_page(request, entries: list[dict], chosen_key: str | None):
    """Every startable process listed; the chosen one's form alone (``?process=``), else every form."""
    shown = [e for e in entries if e["definition"].process_key == chosen_key]
    return render(request, "approvals/start.html", {
        "entries": shown or entries, "processes": entries, "chosen": chosen_key if shown else ""})


def _day(value: str, field: str, *, end: bool = False):
    """A ``YYYY-MM-DD`` form value as the start (or, ``end``, the end) of that local day; blank is ``None``."""
    if not value:
        return None
    try:
        day = datetime.strptime(value, "%Y-%m-%d")
    except ValueError:
        raise ValidationError("invalid date", details=[{"field": field, "message": "Enter a date as YYYY-MM-DD."}])
    if day.date() in (date.min, date.max):  # the calendar's ends: no bound at all (and no overflow)
        return None
    return timezone.make_aware(day + timedelta(days=1) if end else day)


def _away_page(request, form=None, errors=None, status=200):
    users = active_usernames(exclude=request.user)
    standins = list(standins_of(request.user).order_by("starts_at", "id"))
    context = {"mine": [s for s in standins if s.user_id == request.user.pk],
               "covering": [s for s in standins if s.stand_in_id == request.user.pk],
               "tasks": standin_tasks_for(user=request.user), "users": users, "now": timezone.now(),
               "form": form or {}, "errors": errors or {}}
    return render(request, "approvals/away.html", context, status=status)


@login_required
def away(request):
    """Set an out-of-office stand-in (who, from, until, why); list one's stand-ins and whom one covers for."""
    if request.method != "POST":
        return _away_page(request)
    form = {k: request.POST.get(k, "").strip() for k in ("stand_in", "starts_at", "ends_at", "reason")}
    stand_in = active_user(form["stand_in"])
    try:
        standin_set(actor=request.user, user=request.user, stand_in=stand_in,
                    starts_at=_day(form["starts_at"], "starts_at"), ends_at=_day(form["ends_at"], "ends_at", end=True),
                    reason=form["reason"])
    except ValidationError as exc:
        errors, general = fr.errors_by_field(exc.details)
        if form["stand_in"] and "stand_in" in errors and stand_in is None:
            errors["stand_in"] = f"There is no active user named “{form['stand_in']}”."
        return _away_page(request, form, {**errors, "form": " ".join(general)} if general else errors)
    except BatonError as exc:
        return _away_page(request, form, {"form": exc.message})
    messages.success(request, f"{stand_in.get_username()} now stands in for you.")
    return redirect("away")


@login_required
@require_POST
def away_end(request, pk):
    try:
        standin = standin_end(actor=request.user, standin_id=pk)
    except NotFound:
        raise Http404("stand-in not found") from None
    except BatonError as exc:
        messages.error(request, exc.message)
        return redirect("away")
    messages.success(request, f"Ended: {standin.stand_in.get_username()} standing in for "
                              f"{standin.user.get_username()}.")
    return redirect("away")
