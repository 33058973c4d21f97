"""Advance and inspect SpiffWorkflow workflows for the service layer.

Everything here works on an in-memory workflow and returns plain values
(``TaskView``, ``StepFailure``); the caller owns the lock, the transaction and
persistence. Costs: one pass over the task tree per inspection.
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Any, Iterable
from uuid import UUID

from SpiffWorkflow.bpmn.specs.mixins.events.intermediate_event import BoundaryEvent
from SpiffWorkflow.bpmn.specs.mixins.manual_task import ManualTask
from SpiffWorkflow.bpmn.specs.mixins.user_task import UserTask
from SpiffWorkflow.util.task import TaskState

from bpmn import sandbox
from bpmn.parsing import BatonServiceTask
from core.errors import Conflict, NotFound

from .serializer import BatonWorkflow

ACTIVE = TaskState.READY | TaskState.STARTED | TaskState.WAITING
TRACKED = ACTIVE | TaskState.ERROR


@dataclass(frozen=True)
class TaskView:
    """What the service layer needs to know about one engine task."""

    id: UUID
    element_id: str
    name: str
    kind: str
    lane: str
    state: int
    extensions: dict = field(default_factory=dict)


@dataclass(frozen=True)
class StepFailure:
    """A step that raised while the engine ran: the *original* error, not a wrapper's."""

    task_id: UUID | None
    element_id: str
    error_type: str
    message: str
    traceback: str


@dataclass(frozen=True)
class ServiceCall:
    """A service task that started waiting for a job."""

    task: TaskView
    connector: str
    params: dict
    retries: int | None


def _kind(spec: Any) -> str:
    if isinstance(spec, UserTask):
        return "user"
    if isinstance(spec, ManualTask):
        return "manual"
    if isinstance(spec, BatonServiceTask):
        return "service"
    return spec.__class__.__name__


def _view(task: Any) -> TaskView:
    spec = task.task_spec
    return TaskView(
        id=task.id,
        element_id=spec.bpmn_id or spec.name,
        name=spec.bpmn_name or spec.bpmn_id or spec.name,
        kind=_kind(spec),
        lane=spec.lane or "",
        state=task.state,
        extensions=dict(getattr(spec, "extensions", None) or {}),
    )


def _original_error(exc: BaseException) -> BaseException:
    """Follow the cause chain to the error to report: the sandbox's verdict or the user's own exception.

    SpiffWorkflow wraps step errors in ``WorkflowTaskException``; the sandbox's
    own errors (limits, violations, a failed script carrying the script's
    original error type) are what an operator needs, never their internals.
    """
    seen = {id(exc)}
    while not isinstance(exc, sandbox.SandboxError):
        inner = exc.__cause__ or getattr(exc, "exception", None) or exc.__context__
        if inner is None or id(inner) in seen or not isinstance(inner, BaseException):
            return exc
        seen.add(id(inner))
        exc = inner
    return exc


def failure_from(exc: BaseException, workflow: BatonWorkflow) -> StepFailure:
    task = getattr(exc, "task", None)
    if task is None:
        failed = workflow.get_tasks(state=TaskState.ERROR)
        task = failed[0] if failed else None
    original = _original_error(exc)
    error_type = getattr(original, "error_type", None) or original.__class__.__name__
    message = getattr(original, "message", None) or str(original) or error_type
    trace = getattr(original, "traceback_text", None) or "".join(traceback.format_exception(original))
    return StepFailure(
        task_id=task.id if task is not None else None,
        element_id=(task.task_spec.bpmn_id or task.task_spec.name) if task is not None else "",
        error_type=str(error_type),
        message=str(message),
        traceback=trace,
    )


def advance(workflow: BatonWorkflow) -> StepFailure | None:
    """Run engine steps until every branch waits; return the failure that stopped it, if any."""
    try:
        workflow.do_engine_steps()
    except Exception as exc:  # noqa: BLE001 - any step error becomes an incident, never a 500
        return failure_from(exc, workflow)
    return None


def find_task(workflow: BatonWorkflow, task_id: UUID) -> Any:
    task = workflow.get_task_from_id(task_id)
    if task is None:
        raise NotFound(f"task {task_id} does not exist in this instance")
    return task


def complete_human_task(workflow: BatonWorkflow, task_id: UUID, data: dict[str, Any]) -> TaskView:
    """Merge ``data`` into a READY human task and run it; refuse any other state.

    The library's ``Task.run`` does not check the state: without this check two
    loads of the same state could both complete one task.
    """
    task = find_task(workflow, task_id)
    if not task.has_state(TaskState.READY) or not task.task_spec.manual:
        raise Conflict(
            f"task {task.task_spec.bpmn_id} is {TaskState.get_name(task.state)}, not ready for a person",
            code="task_not_open",
        )
    task.data.update(data)
    task.run()
    return _view(task)


def complete_service_task(workflow: BatonWorkflow, task_id: UUID, result: Any) -> TaskView:
    """Finish a STARTED service task with its connector's result."""
    task = find_task(workflow, task_id)
    if not task.has_state(TaskState.STARTED) or not isinstance(task.task_spec, BatonServiceTask):
        raise Conflict(f"task {task.task_spec.bpmn_id} is {TaskState.get_name(task.state)}, not waiting for a job")
    task.data[task.task_spec.result_variable] = result
    task.complete()
    return _view(task)


def retry_failed_task(workflow: BatonWorkflow, task_id: UUID, data: dict[str, Any] | None = None) -> None:
    """Put a task in ERROR back to READY (optionally with edited data) so the next advance re-runs it."""
    task = find_task(workflow, task_id)
    if not task.has_state(TaskState.ERROR):
        raise Conflict(f"task {task.task_spec.bpmn_id} is {TaskState.get_name(task.state)}, not failed")
    if data:
        task.data.update(data)
    task._set_state(TaskState.READY)


def update_started_task(workflow: BatonWorkflow, task_id: UUID, data: dict[str, Any]) -> dict:
    """Edit a waiting service task's data and return its parameters evaluated again."""
    task = find_task(workflow, task_id)
    if not task.has_state(TaskState.STARTED) or not isinstance(task.task_spec, BatonServiceTask):
        raise Conflict(f"task {task.task_spec.bpmn_id} is not a waiting service task")
    task.data.update(data)
    return _evaluate_params(workflow, task)


def skip_task(workflow: BatonWorkflow, task_id: UUID, data: dict[str, Any]) -> None:
    """Complete a failed or waiting automated step with ``data`` instead of running it."""
    task = find_task(workflow, task_id)
    if not task.has_state(TaskState.ERROR | TaskState.STARTED) or task.task_spec.manual:
        raise Conflict(f"task {task.task_spec.bpmn_id} is {TaskState.get_name(task.state)}, nothing to skip")
    task.data.update(data)
    task.complete()


def cancel(workflow: BatonWorkflow) -> None:
    workflow.cancel()


def tracked_states(workflow: BatonWorkflow) -> dict[UUID, int]:
    """Snapshot the state of every active, failed or completed BPMN element (for the activity log).

    Completed elements are in the snapshot so that "completed during this
    command" is a set difference, not a clock comparison (tests freeze clocks).
    """
    return {
        t.id: t.state
        for t in workflow.get_tasks(state=TRACKED | TaskState.COMPLETED)
        if t.task_spec.bpmn_id is not None
    }


@dataclass
class ActivityDiff:
    """Elements that started, finished, failed or were cancelled during one command."""

    started: list[tuple[TaskView, str]] = field(default_factory=list)  # (task, activity state)
    ended: dict[str, list[UUID]] = field(default_factory=dict)  # activity state -> task ids


def activity_diff(workflow: BatonWorkflow, before: dict[UUID, int]) -> ActivityDiff:
    """Compare element states with ``before`` to extend the activity log.

    Boundary events are recorded only once they fire; predicted (FUTURE,
    LIKELY, MAYBE) tasks never.
    """
    diff = ActivityDiff()
    seen: set[UUID] = set()
    for task in workflow.get_tasks(state=TRACKED | TaskState.COMPLETED | TaskState.CANCELLED):
        spec = task.task_spec
        if spec.bpmn_id is None:
            continue
        seen.add(task.id)
        state = task.state
        was = before.get(task.id)
        if was == TaskState.COMPLETED:
            continue
        if was is None:
            if state & ACTIVE and not isinstance(spec, BoundaryEvent):
                diff.started.append((_view(task), "active"))
            elif state == TaskState.COMPLETED:
                diff.started.append((_view(task), "done"))
            elif state == TaskState.ERROR:
                diff.started.append((_view(task), "failed"))
        elif state != was and isinstance(spec, BoundaryEvent):
            if state == TaskState.COMPLETED:  # a boundary event gets its row when it fires
                diff.started.append((_view(task), "done"))
        elif state != was:
            target = {TaskState.COMPLETED: "done", TaskState.CANCELLED: "cancelled", TaskState.ERROR: "failed"}.get(state)
            if target is None and was == TaskState.ERROR and state & ACTIVE:
                target = "active"
            if target:
                diff.ended.setdefault(target, []).append(task.id)
    for task_id in before.keys() - seen:
        if before[task_id] & TRACKED:
            diff.ended.setdefault("cancelled", []).append(task_id)
    return diff


def human_tasks_ready(workflow: BatonWorkflow) -> list[TaskView]:
    return [_view(t) for t in workflow.get_tasks(state=TaskState.READY, manual=True)]


def service_calls_started(workflow: BatonWorkflow, before: dict[UUID, int]) -> list[ServiceCall]:
    """Service tasks that entered STARTED during this command, with evaluated parameters."""
    calls = []
    for task in workflow.get_tasks(state=TaskState.STARTED):
        spec = task.task_spec
        if not isinstance(spec, BatonServiceTask) or before.get(task.id) == TaskState.STARTED:
            continue
        calls.append(ServiceCall(_view(task), spec.operation_name, _evaluate_params(workflow, task), spec.retries))
    return calls


def _evaluate_params(workflow: BatonWorkflow, task: Any) -> dict[str, Any]:
    """Evaluate a service task's parameter expressions (sandboxed) over its data."""
    return {
        name: workflow.script_engine.evaluate(task, param["value"])
        for name, param in (task.task_spec.operation_params or {}).items()
    }


def instance_data(workflow: BatonWorkflow) -> dict[str, Any]:
    """Return the instance data: the data of the latest task on each active path.

    SpiffWorkflow keeps a copy of the data per task; a READY or WAITING task
    holds what its predecessors produced. Once complete, the last task's data.
    """
    if workflow.completed:
        last = workflow.last_task
        data = dict(last.data) if last is not None else {}
    else:
        data = {}
        for task in workflow.get_tasks(state=TRACKED):
            if task.task_spec.bpmn_id is not None:
                data.update(task.data)
    objects = workflow.data.get("data_objects") if isinstance(workflow.data, dict) else None
    if objects:
        data.update({k: v for k, v in objects.items() if v is not None})
    return data


def is_completed(workflow: BatonWorkflow) -> bool:
    return bool(workflow.completed)


def waiting_for_engine(workflow: BatonWorkflow) -> bool:
    """True when some branch could still run without a person, a job or an event."""
    return any(not t.task_spec.manual for t in workflow.get_tasks(state=TaskState.READY))


def element_ids(tasks: Iterable[TaskView]) -> list[str]:
    return [t.element_id for t in tasks]
