"""Benchmark scenarios: each drives one process through Baton and through raw SpiffWorkflow.

Raw SpiffWorkflow = the stock Spiff parser, the stock serializer and the
library's default script engine, in memory, with a serialize/deserialize at
every wait (what any persistent engine must do at least). Baton = the service
layer with the database, the sandbox, HumanTask/Activity rows and the audit trail.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "tests" / "fixtures" / "bpmn" / "engine"
SAMPLES = ROOT / "processes" / "samples"


@dataclass(frozen=True)
class Scenario:
    name: str
    diagram: Path
    process_key: str
    start_data: dict[str, Any]
    # (element_id, data, decision) answered in order, repeated while such a task is open
    answers: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)
    repeat: int = 20


SCENARIOS = [
    Scenario("one user task", ENGINE / "single_user_task.bpmn", "single_user_task", {},
             [("approve", {}, "approve")], repeat=50),
    Scenario("expense approval (manager + finance)", SAMPLES / "expense_approval" / "expense_approval.bpmn",
             "expense_approval", {"employee": "a", "amount": 5000, "category": "it", "description": "x"},
             [("manager_approval", {"decision": "approve"}, "approve"),
              ("finance_approval", {"decision": "approve"}, "approve")], repeat=50),
    Scenario("200-step script chain", ENGINE / "script_chain_200.bpmn", "script_chain_200", {}, [], repeat=5),
    Scenario("parallel multi-instance approval, 100 items", ENGINE / "parallel_mi_100.bpmn", "parallel_mi_100",
             {"items": [{"n": i} for i in range(100)]}, [("approve_item", {"approved": True}, "")], repeat=2),
]


def raw_spiff_run(scenario: Scenario) -> Callable[[], None]:
    """Return a function that runs one instance with raw SpiffWorkflow (parsed once)."""
    from SpiffWorkflow.bpmn import BpmnWorkflow
    from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
    from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser
    from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG
    from SpiffWorkflow.util.task import TaskState

    parser = SpiffBpmnParser()
    parser.add_bpmn_file(str(scenario.diagram))
    spec = parser.get_spec(scenario.process_key)
    subs = parser.get_subprocess_specs(scenario.process_key)
    serializer = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(SPIFF_CONFIG))

    def run() -> None:
        wf = BpmnWorkflow(spec, subs)
        wf.get_tasks(state=TaskState.READY)[0].data.update(scenario.start_data)
        wf.do_engine_steps()
        state = serializer.serialize_json(wf)
        while True:
            wf = serializer.deserialize_json(state)
            ready = wf.get_tasks(state=TaskState.READY, manual=True)
            if not ready:
                break
            task = ready[0]
            answer = next(a for a in scenario.answers if a[0] == task.task_spec.bpmn_id)
            task.data.update(answer[1])
            if answer[2]:
                task.data["decisions"] = {**task.data.get("decisions", {}), answer[0]: {"outcome": answer[2]}}
            task.run()
            wf.do_engine_steps()
            state = serializer.serialize_json(wf)
        assert wf.completed, f"{scenario.name}: raw workflow did not complete"

    return run


def baton_run(scenario: Scenario, requester: Any, approver: Any, statements: list[int]) -> Callable[[], None]:
    """Return a function that runs one instance through Baton's services, counting SQL per completion."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from processes import services
    from processes.models import HumanTaskStatus, InstanceStatus

    def run() -> None:
        instance = services.instance_start(process_key=scenario.process_key, actor=requester, data=scenario.start_data)
        while True:
            task = instance.human_tasks.filter(status=HumanTaskStatus.OPEN).order_by("id").first()
            if task is None:
                break
            answer = next(a for a in scenario.answers if a[0] == task.element_id)
            with CaptureQueriesContext(connection) as queries:
                # a different person approves: the requester may not approve their own request
                services.task_complete(human_task_id=task.pk, actor=approver, data=answer[1], decision=answer[2])
            # savepoints come from the caller's transaction (a test's), not from the command
            statements.append(sum(1 for q in queries.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))))
        instance.refresh_from_db()
        assert instance.status == InstanceStatus.COMPLETED, f"{scenario.name}: Baton instance is {instance.status}"

    return run
