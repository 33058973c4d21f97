"""The instance page: status, diagram with done / active / failed steps, timeline, data; diagram XML."""
from __future__ import annotations

import json

from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from core.errors import NotFound
from processes.models import HumanTaskStatus

from .diagram import diagram_marks
from .selectors import definition_get_for, instance_get_for

BPMN_CONTENT_TYPE = "application/xml; charset=utf-8"


@login_required
def instance_page(request, pk):
    try:
        instance = instance_get_for(user=request.user, instance_id=pk)
    except NotFound:
        raise Http404("instance not found") from None
    context = {
        "instance": instance,
        "open_tasks": instance.human_tasks.filter(status=HumanTaskStatus.OPEN)
        .select_related("assignee").order_by("created_at"),
        "timeline": instance.activities.order_by("started_at", "id"),
        "events": instance.audit_events.values("command").annotate(count=Count("id")).order_by("command"),
        "history": instance.audit_events.select_related("actor").order_by("seq"),
        "data": json.dumps(instance.data, indent=2, default=str),
        "diagram": diagram_marks(instance),
    }
    return render(request, "approvals/instance.html", context)


def _xml(xml: str) -> HttpResponse:
    response = HttpResponse(xml, content_type=BPMN_CONTENT_TYPE)
    response["Cache-Control"] = "private, max-age=300"  # a definition version never changes
    # a designer's file, served from our origin: opened directly, it must not run script (the viewer fetches it)
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


@require_GET
@login_required
def instance_diagram_xml(request, pk):
    try:
        return _xml(instance_get_for(user=request.user, instance_id=pk).definition.bpmn_xml)
    except NotFound:
        raise Http404("instance not found") from None


@require_GET
@login_required
def definition_diagram_xml(request, pk):
    try:
        return _xml(definition_get_for(user=request.user, definition_id=pk).bpmn_xml)
    except NotFound:
        raise Http404("definition not found") from None
