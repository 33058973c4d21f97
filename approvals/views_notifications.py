"""Notification pages: my notices (mark one or all read) and my kind x channel preferences. Thin views."""
from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from core.errors import NotFound

from . import notifications as notes


@login_required
def notifications_page(request):
    unread_only = request.GET.get("unread") == "1"
    items = notes.notifications_for(user=request.user, unread=unread_only).select_related("task", "instance")[:200]
    return render(request, "approvals/notifications.html", {"items": items, "unread_only": unread_only})


@login_required
@require_POST
def notification_read(request, pk: int):
    try:
        notes.notification_read(user=request.user, notification_id=pk)
    except NotFound:
        raise Http404("notification not found") from None
    return redirect("notifications")


@login_required
@require_POST
def notifications_read_all(request):
    count = notes.notifications_read_all(user=request.user)
    messages.success(request, f"Marked {count} notification{'' if count == 1 else 's'} read.")
    return redirect("notifications")


@login_required
def notification_settings(request):
    if request.method == "POST":
        notes.preferences_set(user=request.user, chosen=request.POST.getlist("on"))
        messages.success(request, "Notification settings saved.")
        return redirect("notification_settings")
    prefs = notes.preferences_get(user=request.user)
    rows = [{"kind": kind, "label": label,
             "cells": [{"name": f"{kind}:{channel}", "label": channel_label, "on": prefs[kind][channel]}
                       for channel, channel_label in notes.CHANNELS]}
            for kind, label in notes.KINDS]
    return render(request, "approvals/notification_settings.html", {"rows": rows, "channels": notes.CHANNELS})
