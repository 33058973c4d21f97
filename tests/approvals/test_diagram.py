"""The diagram viewer's data: marks from the whole task tree (loops, parallel branches, incidents), the
BPMN XML routes and who may read them, the viewer partial on the instance page."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from approvals.diagram import definition_marks, diagram_marks, diagram_state
from approvals.services import task_decide
from processes import services
from processes.models import Activity, ActivityState, InstanceStatus, ProcessInstance
from tests.processes.conftest import ENGINE, upload

from .conftest import fresh, open_task, upload_sample

pytestmark = pytest.mark.django_db
EXPENSE = {"employee": "alice", "amount": 5000, "category": "it", "description": "laptop"}


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _start(key: str, user, data: dict) -> ProcessInstance:
    return services.instance_start(process_key=key, actor=user, data=data)


def test_new_instance_marks_the_first_user_task_active(users):
    upload_sample("expense_approval")
    instance = _start("expense_approval", users["alice"], EXPENSE)
    state = diagram_state(instance=instance)
    assert state["active"] == ["manager_approval"]
    assert state["failed"] == []
    assert "manager_approval" not in state["done"] and state["done"]  # the start event is done
    marks = diagram_marks(instance)
    assert marks["active"] == "manager_approval" and marks["failed"] == ""
    assert marks["xml_url"] == f"/instances/{instance.pk}/diagram.bpmn"
    assert marks["legend"][0] == {"state": "active", "label": "Active", "names": ["Manager approval"]}


def test_loop_element_done_and_open_again_is_active(users):
    upload_sample("rejection_loop")
    alice, mike = users["alice"], users["mike"]
    instance = _start("rejection_loop", alice, {"item": "desk", "price": 100})
    submit = {"item": "desk", "price": 100, "justification": "needed"}
    task_decide(human_task_id=open_task(instance, "submit_request").pk, actor=alice, data=submit)
    task_decide(human_task_id=open_task(instance, "review_request").pk, actor=mike,
                data={"decision": "request_changes", "reason": "cheaper one"})
    instance.refresh_from_db()
    state = diagram_state(instance=instance)
    # submit_request ran once (done) and is open again: it shows as active, not done
    assert "submit_request" in state["active"]
    assert "submit_request" not in state["done"]
    assert "review_request" in state["done"] and "review_decision" in state["done"]
    assert Activity.objects.filter(instance=instance, element_id="submit_request",
                                   state=ActivityState.DONE).exists()  # the log alone says "done" too


def test_parallel_branches_are_both_active_then_one_done(users):
    upload_sample("parallel_approvals")
    instance = _start("parallel_approvals", users["alice"], {"contract": "NDA", "value": 12000})
    state = diagram_state(instance=instance)
    assert {"legal_review", "finance_review"} <= set(state["active"])
    assert "start_reviews" in state["done"]
    task_decide(human_task_id=open_task(instance, "legal_review").pk, actor=users["lena"],
                data={"decision": "approve"})
    instance.refresh_from_db()
    state = diagram_state(instance=instance)
    assert "legal_review" in state["done"] and "finance_review" in state["active"]
    assert "legal_review" not in state["active"]


def test_completed_instance_has_no_active_marks(users):
    upload_sample("expense_approval")
    instance = _start("expense_approval", users["alice"], {**EXPENSE, "amount": 100})
    task_decide(human_task_id=open_task(instance, "manager_approval").pk, actor=users["mike"],
                data={"decision": "approve"})
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.COMPLETED
    state = diagram_state(instance=instance)
    assert state["active"] == [] and state["failed"] == []
    assert {"manager_approval", "record_approval"} <= set(state["done"])
    assert "finance_approval" not in state["done"]  # never reached


def test_incident_marks_the_element_failed(users):
    upload(ENGINE / "failing_script.bpmn")
    instance = services.instance_start(process_key="failing_script", actor=users["alice"], data={"divisor": 0})
    assert instance.status == InstanceStatus.INCIDENT
    state = diagram_state(instance=instance)
    assert state["failed"] == ["divide"]
    assert "divide" not in state["active"] and "divide" not in state["done"]
    assert diagram_marks(instance)["legend"][0]["state"] == "failed"


def test_unreadable_state_falls_back_to_the_activity_log(users):
    upload_sample("expense_approval")
    instance = _start("expense_approval", users["alice"], EXPENSE)
    instance.state = b"not a baton envelope"
    assert diagram_state(instance=instance)["active"] == ["manager_approval"]


def test_definition_marks_are_empty_with_the_xml_url(users):
    definition = upload_sample("expense_approval")
    marks = definition_marks(definition)
    assert marks["active"] == marks["done"] == marks["failed"] == "" and marks["legend"] == []
    assert marks["xml_url"] == f"/definitions/{definition.pk}/diagram.bpmn"


def test_instance_xml_is_the_definition_version_xml_and_only_for_who_sees_the_instance(users):
    definition = upload_sample("expense_approval")
    instance = _start("expense_approval", users["alice"], EXPENSE)
    url = f"/instances/{instance.pk}/diagram.bpmn"
    for name in ("alice", "mike", "oscar", "audrey", "admin"):  # starter, candidate, operator, auditor, admin
        response = client_for(users[name]).get(url)
        assert response.status_code == 200, name
        assert response["Content-Type"].startswith("application/xml")
        assert response.content.decode() == definition.bpmn_xml
    for name in ("lena", "eve", "dana"):  # no task in it, not the starter, no reading role
        assert client_for(users[name]).get(url).status_code == 404, name
    assert client_for(users["admin"]).get("/instances/999999/diagram.bpmn").status_code == 404
    anonymous = Client().get(url)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/login/")
    assert client_for(users["alice"]).post(url).status_code == 405


def test_definition_xml_for_starters_and_reading_roles_only(users, tmp_path):
    from .conftest import upload_variant

    definition = upload_variant("expense_approval", tmp_path, process_properties={"baton:starters": "Requesters"})
    url = f"/definitions/{definition.pk}/diagram.bpmn"
    for name in ("alice", "dana", "oscar", "audrey", "admin"):
        response = client_for(users[name]).get(url)
        assert response.status_code == 200, name
        assert "manager_approval" in response.content.decode()
    for name in ("eve", "lena"):
        assert client_for(users[name]).get(url).status_code == 404, name
    assert client_for(users["admin"]).get("/definitions/999999/diagram.bpmn").status_code == 404


def test_instance_page_renders_the_viewer_with_marks_and_a_text_legend(users):
    upload_sample("parallel_approvals")
    instance = _start("parallel_approvals", users["alice"], {"contract": "NDA", "value": 12000})
    page = client_for(users["alice"]).get(f"/instances/{instance.pk}/")
    html = page.content.decode()
    assert page.status_code == 200
    assert f'data-xml-url="/instances/{instance.pk}/diagram.bpmn"' in html
    assert 'data-active="finance_review,legal_review"' in html and 'data-failed=""' in html
    assert 'id="diagram" class="diagram" tabindex="0"' in html and 'aria-label="Process diagram.' in html
    assert "Active: Finance review, Legal review" in html or "Active: Legal review, Finance review" in html
    assert "vendor/bpmn-js/bpmn-navigated-viewer.production.min.js" in html and "approvals/diagram.js" in html
    assert '<button type="button" data-diagram-action="fit"' in html
    assert '<th scope="col">Step</th>' in html and "instance_start" in html  # timeline and history


def test_instance_page_history_shows_decisions_and_completion(users):
    upload_sample("expense_approval")
    instance = _start("expense_approval", users["alice"], {**EXPENSE, "amount": 100})
    task_decide(human_task_id=open_task(instance, "manager_approval").pk, actor=users["mike"],
                data={"decision": "reject", "reason": "not in budget"}, decision="reject", reason="not in budget")
    html = client_for(users["mike"]).get(f"/instances/{instance.pk}/").content.decode()
    assert '<dd id="instance-status">Completed</dd>' in html
    assert "task_complete" in html and "not in budget" in html and "instance_complete" in html


def test_task_page_viewer_points_at_the_instance_xml_its_viewer_may_read(users):
    upload_sample("expense_approval")
    instance = _start("expense_approval", users["alice"], EXPENSE)
    task = open_task(instance, "manager_approval")
    max_ = fresh(users["max"])  # a candidate (Managers) who is neither starter nor assignee
    html = client_for(max_).get(f"/tasks/{task.pk}/").content.decode()
    assert f'data-xml-url="/instances/{instance.pk}/diagram.bpmn"' in html
    assert client_for(max_).get(f"/instances/{instance.pk}/diagram.bpmn").status_code == 200


def test_api_diagram_state_uses_the_task_tree(users):
    from rest_framework.test import APIClient

    upload_sample("rejection_loop")
    alice = users["alice"]
    alice.groups.add(Group.objects.get_or_create(name="Requesters")[0])
    instance = _start("rejection_loop", alice, {"item": "desk", "price": 100})
    task_decide(human_task_id=open_task(instance, "submit_request").pk, actor=alice,
                data={"item": "desk", "price": 100, "justification": "needed"})
    task_decide(human_task_id=open_task(instance, "review_request").pk, actor=users["mike"],
                data={"decision": "request_changes", "reason": "again"})
    client = APIClient()
    client.force_authenticate(alice)
    state = client.get(f"/api/v1/instances/{instance.pk}/diagram-state/").json()
    assert "submit_request" in state["active"] and "submit_request" not in state["done"]
    assert client_for(users["eve"]).get(f"/api/v1/instances/{instance.pk}/diagram-state/").status_code in (401, 403, 404)


def test_task_page_marks_its_own_step_among_parallel_active_ones(users):
    upload_sample("parallel_approvals")
    instance = _start("parallel_approvals", users["alice"], {"contract": "NDA", "value": 12000})
    legal = open_task(instance, "legal_review")
    html = client_for(fresh(users["lena"])).get(f"/tasks/{legal.pk}/").content.decode()
    assert 'data-current="legal_review"' in html
    assert "finance_review" in html.split('data-active="', 1)[1].split('"', 1)[0]  # the other branch: active only
    legend = html.split('id="diagram-legend"', 1)[1].split("</ul>", 1)[0]
    assert legend.index("This task: Legal review") < legend.index("Active:")
    marks = diagram_marks(instance)
    assert marks["current"] == "" and not any(entry["state"] == "current" for entry in marks["legend"])


def test_tree_states_are_read_once_per_instance_version(users):
    upload_sample("expense_approval")
    instance = _start("expense_approval", users["alice"], EXPENSE)
    first = diagram_state(instance=instance)
    instance.state = b"not a state"  # a second read of the same version must not restore the tree again
    assert diagram_state(instance=instance) == first
    task_decide(human_task_id=open_task(instance, "manager_approval").pk, actor=users["mike"],
                data={"decision": "approve", "reason": "ok"})
    instance = ProcessInstance.objects.get(pk=instance.pk)
    moved = diagram_state(instance=instance)  # a new version: read again
    assert "manager_approval" in moved["done"] and "finance_approval" in moved["active"]
