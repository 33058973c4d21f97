"""Message and signal waits and throws inside one workflow (the library side of ``processes.messages``).

A *wait* is one thing a MessageSubscription row stands for: a waiting catch
event, receive task, boundary event or message/signal start event, or one
branch of a waiting event-based gateway (the library keeps one waiting task
for the gateway and predicts a child task per branch: the branch's task id
names the wait, so the gateway gets one row per branch). Signal waits are
named ``signal:<name>`` so one table serves both.

The correlation key is computed by Baton when the wait starts: the
correlation properties of the message evaluated over the waiting task's data
(``spiffworkflow:processVariableCorrelation`` expressions when the diagram
has them, otherwise the ``correlationPropertyRetrievalExpression`` of the
message), through the workflow's sandboxed script engine; a message without
correlation properties is keyed by the instance's business key. A thrown
message carries the key computed from its payload with the same properties,
canonicalized the same way (``key_text``).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterator
from uuid import UUID

from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.multiple import MultipleEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.item_aware_event import SignalEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.events.event_types import ThrowingEvent
from SpiffWorkflow.bpmn.specs.mixins.events.intermediate_event import EventBasedGateway
from SpiffWorkflow.bpmn.specs.mixins.events.start_event import StartEvent
from SpiffWorkflow.bpmn.util import BpmnEvent
from SpiffWorkflow.util.task import TaskState

from core.errors import Conflict, ValidationError

from .serializer import BatonWorkflow

SIGNAL_PREFIX = "signal:"
MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class Wait:
    """One message or signal wait, as a MessageSubscription row records it."""

    task_id: UUID
    element_id: str
    message_name: str
    correlation_key: str


@dataclass(frozen=True)
class Thrown:
    """A message or signal that left the workflow (nobody inside it caught it)."""

    kind: str  # "message" or "signal"
    name: str
    payload: Any
    correlation_key: str | None  # from the message's correlation properties; None when it has none
    task_id: UUID | None
    element_id: str


def key_text(values: dict[str, Any]) -> str:
    """Canonicalize correlation property values into the key stored and matched.

    One property: its value as text (``"A-1"``, ``"42"``); several: compact
    sorted JSON. Keys longer than the column become ``sha256:<hex>``.
    """
    value: Any = next(iter(values.values())) if len(values) == 1 else dict(sorted(values.items()))
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    if len(text) > MAX_KEY_LENGTH:
        text = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    return text


def _subscription_name(definition: Any) -> str | None:
    if isinstance(definition, MessageEventDefinition):
        return definition.name
    if isinstance(definition, SignalEventDefinition):
        return SIGNAL_PREFIX + definition.name
    return None


def _slots(workflow: BatonWorkflow) -> Iterator[tuple[Any, Any, Any]]:
    """Yield ``(slot task, catching task, event definition)`` for every message/signal wait.

    The slot is the task the subscription names: the catching task itself, or
    for an event-based gateway the predicted child task of each branch.
    """
    for task in list(workflow.event_manager.tasks.values()):
        if task.state != TaskState.WAITING:
            continue
        definition = task.task_spec.event_definition
        if isinstance(task.task_spec, EventBasedGateway) and isinstance(definition, MultipleEventDefinition):
            for child, branch in zip(task.children, definition.event_definitions):
                if _subscription_name(branch) is not None:
                    yield child, task, branch
        elif _subscription_name(definition) is not None:
            yield task, task, definition


def wait_ids(workflow: BatonWorkflow) -> set[UUID]:
    """Return the slot task ids of every wait (cheap: no expression is evaluated)."""
    return {slot.id for slot, _, _ in _slots(workflow)}


def _properties(definition: Any) -> list[Any]:
    """The properties keying a wait: Spiff's process-variable expressions, else the message's own."""
    return list(getattr(definition, "process_correlations", None)
                or getattr(definition, "correlation_properties", None) or [])


def _wait_key(catcher: Any, definition: Any, business_key: str) -> str:
    """Compute a wait's correlation key over the catching task's data (see module doc).

    A property that cannot be evaluated falls back to the value the library
    recorded from an earlier message of the conversation; with no value at all
    the key is empty and only a message sent without a key can reach it.
    """
    if not isinstance(definition, MessageEventDefinition):
        return ""
    properties = _properties(definition)
    if not properties:
        return business_key
    known = {name: value for group in catcher.workflow.correlations.values() for name, value in group.items()}
    values: dict[str, Any] = {}
    for prop in properties:
        try:
            values[prop.name] = catcher.workflow.script_engine.evaluate(catcher, prop.retrieval_expression)
        except Exception:  # noqa: BLE001 - a missing variable is not an error of the command
            if prop.name in known:
                values[prop.name] = known[prop.name]
    return key_text(values) if values else ""


def waits(workflow: BatonWorkflow, *, business_key: str, only: set[UUID] | None = None) -> list[Wait]:
    """Describe the waits of ``workflow`` (those in ``only``, when given), with their keys."""
    found = []
    for slot, catcher, definition in _slots(workflow):
        if only is not None and slot.id not in only:
            continue
        spec = slot.task_spec
        found.append(Wait(
            task_id=slot.id,
            element_id=spec.bpmn_id or spec.name,
            message_name=_subscription_name(definition) or "",
            correlation_key=_wait_key(catcher, definition, business_key),
        ))
    return found


def _check_payload(workflow: BatonWorkflow, definition: Any, payload: dict[str, Any]) -> None:
    """Refuse a message whose payload lacks its correlation properties (the library reads them on catch)."""
    properties = getattr(definition, "correlation_properties", None) or []
    if not properties:
        return
    try:
        definition.calculate_correlations(workflow.script_engine, properties, payload)
    except Exception as exc:  # noqa: BLE001 - reported as the caller's mistake
        names = ", ".join(sorted({p.name for p in properties}))
        raise ValidationError(
            f"the payload of message '{definition.name}' must carry its correlation properties ({names})",
            code="payload_lacks_correlation",
        ) from exc


def deliver(workflow: BatonWorkflow, slot_ids: list[UUID], payload: dict[str, Any]) -> list[Wait]:
    """Hand an incoming message or signal to the given waits (Baton already matched them).

    Uses the library's catch on exactly these tasks, with the instance's own
    correlation values on the event so the library's correlation check (which
    would accept anything while an instance has none) agrees with Baton's
    choice. Raises Conflict when none of the waits is still waiting.
    """
    wanted = set(slot_ids)
    delivered = []
    for slot, catcher, definition in list(_slots(workflow)):
        if slot.id not in wanted or catcher.state != TaskState.WAITING:
            continue
        if isinstance(definition, MessageEventDefinition):
            _check_payload(workflow, definition, payload)
        event = BpmnEvent(definition, payload=payload, correlations=dict(catcher.workflow.correlations))
        catcher.task_spec.catch(catcher, event)
        catcher.task_spec._update(catcher)
        if isinstance(catcher.task_spec, EventBasedGateway) and catcher.state == TaskState.READY:
            # The gateway keeps the caught events (library objects) in its internal data, which the
            # state envelope's plain JSON cannot hold: run it now (the next advance would run it
            # first anyway) and drop them once its branch is chosen.
            catcher.run()
            catcher.internal_data.pop("seen_events", None)
        spec = slot.task_spec
        delivered.append(Wait(slot.id, spec.bpmn_id or spec.name, _subscription_name(definition) or "", ""))
    if not delivered:
        raise Conflict("the instance is no longer waiting for this event", code="not_waiting")
    return delivered


def deliver_to_start(workflow: BatonWorkflow, subscription_name: str, payload: dict[str, Any]) -> list[Wait]:
    """Deliver to the waiting start event(s) named ``subscription_name`` of a new workflow."""
    slots = [
        slot.id for slot, catcher, definition in _slots(workflow)
        if isinstance(catcher.task_spec, StartEvent) and _subscription_name(definition) == subscription_name
    ]
    return deliver(workflow, slots, payload)


def start_event_names(spec: Any) -> set[str]:
    """Return the subscription names of the message and signal start events of a process spec."""
    return {
        name for start in getattr(spec, "bpmn_start_events", [])
        if (name := _subscription_name(start.event_definition)) is not None
    }


def thrown(workflow: BatonWorkflow, *, since: float) -> list[Thrown]:
    """Take the messages and signals this command threw out of the workflow (``get_events`` empties the list).

    Each is matched to the throw event that completed during the command, for
    the job's element id; errors and escalations nobody caught stay internal.
    """
    events = workflow.get_events()
    if not events:
        return []
    throwers = [
        t for t in workflow.get_tasks(state=TaskState.COMPLETED)
        if isinstance(t.task_spec, ThrowingEvent) and (t.last_state_change or 0) >= since
    ]
    found = []
    for event in events:
        definition = event.event_definition
        if isinstance(definition, MessageEventDefinition):
            values = {n: v for group in event.correlations.values() for n, v in group.items()}
            kind, key = "message", key_text(values) if values else None
        elif isinstance(definition, SignalEventDefinition):
            kind, key = "signal", None
        else:
            continue
        task = next((t for t in throwers if t.task_spec.event_definition == definition), None)
        if task is not None:
            throwers.remove(task)
        found.append(Thrown(
            kind=kind, name=definition.name, payload=event.payload, correlation_key=key,
            task_id=task.id if task is not None else None,
            element_id=(task.task_spec.bpmn_id or "") if task is not None else "",
        ))
    return found


def start_has_correlation(spec: Any, subscription_name: str) -> bool:
    """True when a start event of ``spec`` waiting for ``subscription_name`` has correlation properties."""
    return any(
        _properties(start.event_definition) for start in getattr(spec, "bpmn_start_events", [])
        if _subscription_name(start.event_definition) == subscription_name
    )
