"""The engine adapter: state envelope, sandbox on every load path, persistence at every wait."""
from __future__ import annotations

import json
import zlib

import pytest

from core.errors import StateRejected
from processes import services
from processes.engine import runtime, serializer
from processes.engine.scripting import SandboxEnvironment
from processes.models import HumanTaskStatus, InstanceStatus, ProcessInstance
from processes.selectors import definition_specs

from .conftest import ENGINE, SAMPLES

pytestmark = pytest.mark.django_db


def _load(instance: ProcessInstance):
    instance.refresh_from_db()
    return serializer.state_loads(instance.state, definition_id=instance.definition_id,
                                  specs=definition_specs(instance.definition))


def _envelope(instance: ProcessInstance) -> dict:
    return json.loads(zlib.decompress(bytes(instance.state)))


def test_state_is_opaque_bytes_not_json():
    field = ProcessInstance._meta.get_field("state")
    assert field.get_internal_type() == "BinaryField"


def test_state_envelope_holds_no_specs_and_loads_with_the_sandbox(deploy, alice):
    deploy(ENGINE / "single_user_task.bpmn")
    instance = services.instance_start(process_key="single_user_task", actor=alice, data={"x": 1})
    envelope = _envelope(instance)
    assert envelope["format"] == "baton-state"
    assert envelope["definition"] == instance.definition_id
    assert "spec" not in envelope["workflow"] and "subprocess_specs" not in envelope["workflow"]
    workflow = _load(instance)
    assert isinstance(workflow, serializer.BatonWorkflow)
    assert isinstance(workflow.script_engine.environment, SandboxEnvironment)
    for sub in workflow.subprocesses.values():
        assert isinstance(sub.script_engine.environment, SandboxEnvironment)


def test_loaded_workflow_runs_scripts_in_the_sandbox(deploy, alice, tmp_path):
    """A restored workflow must not fall back to the library's unrestricted engine."""
    from bpmn.sandbox import SandboxViolation

    deploy(ENGINE / "single_user_task.bpmn")
    instance = services.instance_start(process_key="single_user_task", actor=alice)
    workflow = _load(instance)
    marker = tmp_path / "marker"
    with pytest.raises(SandboxViolation):
        workflow.script_engine.environment.evaluate(f"__import__('os').system('touch {marker}')", {})
    assert not marker.exists()


@pytest.mark.parametrize("mutate, message", [
    (lambda env: env.update(serializer_version="1.0"), "serializer version"),
    (lambda env: env.update(version=0), "serializer version"),
    (lambda env: env.update(format="spiff"), "not a Baton envelope"),
    (lambda env: env.update(definition=-1), "another definition"),
    (lambda env: env.update(workflow={"tasks": []}), "no task tree"),
])
def test_foreign_or_old_states_are_refused_before_library_code(deploy, alice, monkeypatch, mutate, message):
    from SpiffWorkflow.bpmn.serializer.migration import version_migration

    calls = []
    for key in list(version_migration.MIGRATIONS):
        monkeypatch.setitem(version_migration.MIGRATIONS, key, lambda dct, _k=key: calls.append(_k))
    deploy(ENGINE / "single_user_task.bpmn")
    instance = services.instance_start(process_key="single_user_task", actor=alice)
    envelope = _envelope(instance)
    mutate(envelope)
    instance.state = zlib.compress(json.dumps(envelope).encode())
    with pytest.raises(StateRejected, match=message):
        serializer.state_loads(instance.state, definition_id=instance.definition_id,
                               specs=definition_specs(instance.definition))
    assert calls == []


def test_absurd_nesting_and_garbage_are_refused(deploy, alice):
    deploy(ENGINE / "single_user_task.bpmn")
    instance = services.instance_start(process_key="single_user_task", actor=alice)
    specs = definition_specs(instance.definition)
    deep = zlib.compress(("[" * 200_000 + "]" * 200_000).encode())
    for state in (deep, b"not compressed", zlib.compress(b"{broken json")):
        with pytest.raises(StateRejected):
            serializer.state_loads(state, definition_id=instance.definition_id, specs=specs)


def test_a_refused_state_surfaces_as_a_clean_error_from_a_command(deploy, alice):
    deploy(ENGINE / "single_user_task.bpmn")
    instance = services.instance_start(process_key="single_user_task", actor=alice)
    ProcessInstance.objects.filter(pk=instance.pk).update(state=zlib.compress(b'{"format": "other"}'))
    task = instance.human_tasks.get()
    with pytest.raises(StateRejected):
        services.task_complete(human_task_id=task.pk, actor=alice)
    task.refresh_from_db()
    assert task.status == HumanTaskStatus.OPEN


def test_migrate_states_reports_nothing_to_do_for_current_states(deploy, alice):
    from io import StringIO

    from django.core.management import call_command

    deploy(ENGINE / "single_user_task.bpmn")
    services.instance_start(process_key="single_user_task", actor=alice)
    out = StringIO()
    call_command("migrate_states", stdout=out)
    assert "migrated 0 instance(s)" in out.getvalue()


def _drive(instance: ProcessInstance, answers: dict[str, tuple[dict, str]], actor, expected_keys: set[str]) -> None:
    """Complete open tasks until none is left, reloading from the database at every wait."""
    for _ in range(20):
        workflow = _load(instance)
        ready = workflow.get_tasks(state=runtime.TaskState.READY)
        for task in ready:
            missing = expected_keys - set(task.data)
            assert not missing, f"{task.task_spec.bpmn_id} lost {missing} after a reload"
        open_tasks = list(instance.human_tasks.filter(status=HumanTaskStatus.OPEN))
        if not open_tasks:
            return
        task = open_tasks[0]
        data, decision = answers[task.element_id]
        services.task_complete(human_task_id=task.pk, actor=actor, data=data, decision=decision)
    raise AssertionError("the process did not finish")


@pytest.mark.sqlite_smoke
@pytest.mark.parametrize("key, start, answers, final", [
    ("expense_approval", {"employee": "a", "amount": 5000, "category": "it", "description": "d"},
     {"manager_approval": ({"decision": "approve", "reason": "ok"}, "approve"),
      "finance_approval": ({"decision": "approve", "reason": "ok"}, "approve")}, {"status": "approved"}),
    ("parallel_approvals", {"contract": "c", "value": 3},
     {"legal_review": ({"decision": "approve"}, "approve"), "finance_review": ({"decision": "reject"}, "reject")},
     {"outcome": "rejected"}),
    ("rejection_loop", {"item": "desk", "price": 100},
     {"submit_request": ({"item": "desk", "price": 100, "justification": "j"}, ""),
      "review_request": ({"decision": "approve"}, "approve")}, {"status": "approved"}),
])
def test_every_sample_keeps_task_data_across_reloads(deploy, alice, bob, key, start, answers, final):
    """RELIABILITY persistence test: save and reload at each wait keeps every task's data."""
    deploy(SAMPLES / key / f"{key}.bpmn")
    instance = services.instance_start(process_key=key, actor=alice, data=start)
    _drive(instance, answers, bob, set(start))  # not alice: the requester may not approve (approvals.rules)
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.COMPLETED
    for name, value in {**start, **final}.items():
        assert instance.data[name] == value
