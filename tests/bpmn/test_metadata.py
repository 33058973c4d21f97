"""Element metadata extracted once per definition: lanes, candidates, forms, connectors, retries."""
from __future__ import annotations

import json

from bpmn.metadata import decision_refs, form_files, process_elements
from bpmn.xmlsafe import parse_xml

from .conftest import fixture_files


def _elements(name: str, process_id: str) -> dict:
    root = parse_xml(fixture_files(name)[0][1], file=name)
    return process_elements(root, process_id)


def test_camunda_user_task_metadata():
    elements = _elements("camunda_approval.bpmn", "purchase_request")
    approve = elements["approve"]
    assert approve["type"] == "userTask" and approve["name"] == "Approve request"
    assert approve["lane"] == "managers" and approve["lane_id"] == "Lane_managers"
    assert approve["candidate_groups"] == ["managers", "finance"]
    assert approve["candidate_users"] == ["alice"]
    assert approve["assignee"] == "bob"
    assert approve["due_date"] == "P2D" and approve["priority"] == "70"
    assert approve["documentation"] == "Check the amount against the budget."
    assert approve["properties"] == {"category": "purchasing"}
    schema = approve["form"]["fields_schema"]
    assert schema["required"] == ["approved"]
    assert schema["properties"]["approved"]["type"] == "boolean"
    assert schema["properties"]["channel"]["enum"] == ["mail", "phone"]
    json.dumps(elements)  # plain JSON


def test_camunda_connector_retries_and_starters():
    elements = _elements("camunda_approval.bpmn", "purchase_request")
    assert elements["order"]["connector"] == "erp.place_order"
    assert elements["order"]["retries"] == 5 and elements["order"]["backoff"] == "PT10M"
    assert elements["order"]["lane"] == "system"
    assert elements["reminder"]["event"] == "timer"
    assert elements["start"]["form"] == {"form_key": "request.json"}
    assert elements["purchase_request"]["type"] == "process"
    assert elements["purchase_request"]["candidate_groups"] == ["staff"]
    assert ("start", "request.json") in form_files(elements)


def test_spiff_metadata():
    elements = _elements("spiff_form.bpmn", "expense_claim")
    review = elements["review"]
    assert review["lane"] == "Finance Team"
    assert review["form"] == {"schema": "review-schema.json", "ui_schema": "review-uischema.json"}
    assert review["retries"] == 4
    assert review["instructions"] == "Please review {{total}}."
    pay = elements["pay"]
    assert pay["connector"] == "bank/transfer" and pay["result_variable"] == "payment"
    assert pay["parameters"] == {
        "amount": {"value": "total", "type": "int"}, "currency": {"value": "'EUR'", "type": "str"}}
    assert pay["retries"] == 3 and pay["backoff"] == 2
    assert sorted(form_files(elements)) == [("review", "review-schema.json"), ("review", "review-uischema.json")]


def test_potential_owner_and_baton_properties():
    text = fixture_files("minimal.bpmn")[0][1].decode().replace(
        '<bpmn:userTask id="approve" name="Approve">',
        '<bpmn:userTask id="approve" name="Approve" xmlns:baton="https://baton.example/bpmn" baton:retries="2" '
        'baton:candidateGroups="auditors">'
        "<bpmn:potentialOwner><bpmn:resourceAssignmentExpression><bpmn:formalExpression>"
        "user(kermit), group(management)</bpmn:formalExpression></bpmn:resourceAssignmentExpression>"
        "</bpmn:potentialOwner>")
    root = parse_xml(text.encode(), file="owners.bpmn")
    approve = process_elements(root, "minimal")["approve"]
    assert approve["candidate_users"] == ["kermit"]
    assert approve["candidate_groups"] == ["management", "auditors"]
    assert approve["retries"] == 2


def test_subprocess_children_inherit_the_lane_and_decisions_are_listed():
    root = parse_xml(fixture_files("business_rule.bpmn")[0][1], file="business_rule.bpmn")
    assert decision_refs(root, "routing_process") == ["routing"]
    assert process_elements(root, "nope") == {}
