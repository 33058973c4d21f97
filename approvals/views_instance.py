"""The instance page: status, diagram with done / active / failed steps, timeline, data."""
from __future__ import annotations

import json

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import render

from core.errors import NotFound
from processes.models import HumanTaskStatus

from .diagram import diagram_marks
from .selectors import instance_get_for


@login_required
def instance_page(request, pk):
    try:
        instance = instance_get_for(user=request.user, instance_id=pk)
    except NotFound:
        raise Http404("instance not found") from None
    context = {
        "instance": instance,
        "open_tasks": instance.human_tasks.filter(status=HumanTaskStatus.OPEN).order_by("created_at"),
        "timeline": instance.activities.order_by("started_at", "id"),
        "data": json.dumps(instance.data, indent=2, default=str),
        "diagram": diagram_marks(instance),
    }
    return render(request, "approvals/instance.html", context)
