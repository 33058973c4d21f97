"""What the diagram viewer highlights: element ids that are done, active or failed.

Marks come from the instance's whole SpiffWorkflow task tree, not from the
activity log alone, so that a loop (an element done in an earlier round and
open again) shows as active and both branches of a parallel split show as
active at once. Loading the state costs one decompress + restore of the task
tree per page view (a few ms for an approval process); when the state cannot
be loaded (e.g. an envelope of another serializer version) the activity log
is the fallback.
"""
from __future__ import annotations

import logging
from typing import Any

from django.core.cache import cache
from django.urls import reverse
from SpiffWorkflow.bpmn.specs.mixins.events.intermediate_event import BoundaryEvent
from SpiffWorkflow.util.task import TaskState

from bpmn.models import ProcessDefinition
from core.errors import BatonError
from processes.engine.serializer import state_loads
from processes.models import ActivityState, IncidentStatus, ProcessInstance
from processes.selectors import definition_specs

log = logging.getLogger("baton.diagram")

STATES = ("active", "done", "failed")
LABELS = {"active": "Active", "failed": "Failed", "done": "Done"}
_ACTIVE = TaskState.READY | TaskState.WAITING | TaskState.STARTED
TREE_CACHE_SECONDS = 600


def _states_from_tree(instance: ProcessInstance) -> dict[str, set[int]]:
    """Return every engine state each BPMN element is in (element id -> states); raises if unloadable."""
    workflow = state_loads(instance.state, definition_id=instance.definition_id,
                           specs=definition_specs(instance.definition))
    seen: dict[str, set[int]] = {}
    for task in workflow.get_tasks(state=_ACTIVE | TaskState.COMPLETED | TaskState.ERROR):
        spec = task.task_spec
        if spec.bpmn_id is None:
            continue
        if isinstance(spec, BoundaryEvent) and task.state != TaskState.COMPLETED:
            continue  # an armed boundary event is not a step anyone works on; it shows once it fires
        seen.setdefault(spec.bpmn_id, set()).add(task.state)
    return seen


def _states_from_log(instance: ProcessInstance) -> dict[str, set[int]]:
    as_engine = {ActivityState.ACTIVE: TaskState.READY, ActivityState.DONE: TaskState.COMPLETED,
                 ActivityState.FAILED: TaskState.ERROR}
    seen: dict[str, set[int]] = {}
    for element_id, state in instance.activities.values_list("element_id", "state"):
        if state in as_engine:
            seen.setdefault(element_id, set()).add(as_engine[state])
    return seen


def diagram_state(*, instance: ProcessInstance) -> dict[str, list[str]]:
    """Return the element ids to mark, per state: ``active``, ``done`` and ``failed`` (each sorted).

    An element is failed if it has an open incident or a task in ERROR;
    otherwise active if any of its tasks is READY, WAITING or STARTED;
    otherwise done if it completed at least once. Each id is in one list only.
    The tree's states are cached per instance version (restoring a large tree
    costs more than the page); open incidents are always read afresh.
    """
    # every command bumps the version; the start time tells apart instances that got a reused id
    key = f"baton:diagram:{instance.pk}:{instance.version}:{instance.started_at.timestamp()}"
    seen = cache.get(key)
    if seen is None:
        try:
            seen = _states_from_tree(instance)
        except (BatonError, ValueError, KeyError, TypeError) as exc:
            log.warning("diagram of instance %s from the activity log: %s", instance.pk, exc)
            seen = _states_from_log(instance)
        cache.set(key, seen, TREE_CACHE_SECONDS)
    failed = {element_id for element_id, states in seen.items() if TaskState.ERROR in states}
    failed |= set(instance.incidents.filter(status=IncidentStatus.OPEN).exclude(element_id="")
                  .values_list("element_id", flat=True))
    active = {e for e, states in seen.items() if any(s & _ACTIVE for s in states)} - failed
    done = {e for e, states in seen.items() if TaskState.COMPLETED in states} - failed - active
    return {"active": sorted(active), "done": sorted(done), "failed": sorted(failed)}


def _names(definition: ProcessDefinition, element_ids: list[str]) -> list[str]:
    elements = definition.elements or {}
    return [(elements.get(e) or {}).get("name") or e for e in element_ids]


def _marks(state: dict[str, list[str]], definition: ProcessDefinition, xml_url: str, *,
           instance: bool) -> dict[str, Any]:
    marks: dict[str, Any] = {key: ",".join(state[key]) for key in STATES}
    marks["xml_url"], marks["instance"] = xml_url, instance
    marks["legend"] = [{"state": key, "label": LABELS[key], "names": _names(definition, state[key])}
                       for key in ("active", "failed", "done") if state[key]]
    return marks


def diagram_marks(instance: ProcessInstance, *, current: str = "") -> dict[str, Any]:
    """Return the ``diagram`` context of ``_diagram.html`` for an instance.

    ``active`` / ``done`` / ``failed`` are comma-separated element ids (the
    ``#diagram`` element's data attributes), ``xml_url`` is where the viewer
    fetches the BPMN XML, ``legend`` lists element names per state in text.
    ``current`` (the task page's element id) is marked on top of its state
    and named first in the legend ("This task: …").
    """
    marks = _marks(diagram_state(instance=instance), instance.definition,
                   reverse("instance_diagram_xml", args=[instance.pk]), instance=True)
    marks["current"] = current
    if current:
        marks["legend"].insert(0, {"state": "current", "label": "This task",
                                   "names": _names(instance.definition, [current])})
    return marks


def definition_marks(definition: ProcessDefinition) -> dict[str, Any]:
    """Return the ``diagram`` context for a definition alone: no marks, only its XML URL."""
    return _marks({key: [] for key in STATES}, definition, reverse("definition_diagram_xml", args=[definition.pk]),
                  instance=False)
