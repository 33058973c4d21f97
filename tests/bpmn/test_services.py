"""Publishing definitions: versions, content hashes, call pinning, files, signal, selectors."""
from __future__ import annotations

import hashlib
import json

import pytest
from django.contrib.auth import get_user_model

from bpmn import parsing
from bpmn.models import DefinitionFile, ProcessDefinition
from bpmn.selectors import definition_get, definition_list
from bpmn.services import definition_upload
from bpmn.signals import definition_published
from core.errors import DiagramRejected, NotFound

from .conftest import fixture_files, fixture_text, problem_for, problems_of

pytestmark = pytest.mark.django_db


def test_upload_publishes_one_version_with_everything():
    user = get_user_model().objects.create(username="designer")
    [definition] = definition_upload(
        files=fixture_files("spiff_form.bpmn", "review-schema.json", "review-uischema.json")
        + [("process_model.json", b'{"display_name": "ignored"}')],
        uploaded_by=user,
    )
    assert (definition.process_key, definition.version, definition.dialect) == ("expense_claim", 1, "spiff")
    assert definition.name == "Expense claim" and definition.source_name == "spiff_form.bpmn"
    assert definition.uploaded_by == user and len(definition.content_hash) == 64
    assert definition.bpmn_xml == fixture_text("spiff_form.bpmn")
    assert definition.elements["review"]["lane"] == "Finance Team"
    files = {f.name: f.kind for f in definition.files.all()}
    assert files == {
        "review-schema.json": DefinitionFile.Kind.FORM, "review-uischema.json": DefinitionFile.Kind.UI_SCHEMA}
    spec, subprocesses = parsing.spec_bundle_loads(definition.spec_bundle)
    assert spec.name == "expense_claim" and subprocesses == {}


def test_same_content_is_the_same_version_and_changes_make_a_new_one():
    first = definition_upload(files=fixture_files("minimal.bpmn"), uploaded_by=None)[0]
    assert first.content_hash == hashlib.sha256(fixture_files("minimal.bpmn")[0][1]).hexdigest()
    again = definition_upload(files=fixture_files("minimal.bpmn"), uploaded_by=None)[0]
    assert again.pk == first.pk and again.version == 1
    changed = fixture_text("minimal.bpmn").replace('name="Approve"', 'name="Approve it"')
    second = definition_upload(files=[("minimal.bpmn", changed.encode())], uploaded_by=None)[0]
    assert second.version == 2 and second.content_hash != first.content_hash
    assert ProcessDefinition.objects.filter(process_key="minimal").count() == 2
    assert definition_get(process_key="minimal").version == 2
    assert definition_get(process_key="minimal", version=1).pk == first.pk


def test_attached_files_are_part_of_the_content():
    first = definition_upload(files=fixture_files("business_rule.bpmn", "decision.dmn"), uploaded_by=None)[0]
    assert [f.name for f in first.files.all()] == ["decision.dmn"]
    dmn = fixture_text("decision.dmn").replace('"board"', '"council"')
    second = definition_upload(files=fixture_files("business_rule.bpmn") + [("decision.dmn", dmn.encode())],
                               uploaded_by=None)[0]
    assert second.version == 2


def test_call_activity_pins_the_published_version():
    callee_v1 = definition_upload(files=fixture_files("callee.bpmn"), uploaded_by=None)[0]
    caller = definition_upload(files=fixture_files("caller.bpmn"), uploaded_by=None)[0]
    assert caller.calls == {"credit_check": callee_v1.version}
    _, subprocesses = parsing.spec_bundle_loads(caller.spec_bundle)
    assert "credit_check" in subprocesses
    changed = fixture_text("callee.bpmn").replace('name="Check credit"', 'name="Check credit twice"')
    callee_v2 = definition_upload(files=[("callee.bpmn", changed.encode())], uploaded_by=None)[0]
    assert callee_v2.version == 2
    caller.refresh_from_db()
    assert caller.calls == {"credit_check": 1}, "published versions never change"
    repinned = definition_upload(files=fixture_files("caller.bpmn"), uploaded_by=None)[0]
    assert repinned.version == 2 and repinned.calls == {"credit_check": 2}


def test_call_activity_within_one_upload():
    caller, callee = definition_upload(files=fixture_files("caller.bpmn", "callee.bpmn"), uploaded_by=None)
    assert caller.process_key == "loan_application" and callee.process_key == "credit_check"
    assert caller.calls == {"credit_check": callee.version}


def test_missing_callee_is_refused_naming_the_call_activity():
    with pytest.raises(DiagramRejected) as exc_info:
        definition_upload(files=fixture_files("caller.bpmn"), uploaded_by=None)
    problem = problem_for(problems_of(exc_info), "call_credit_check", "credit_check", "neither in this upload")
    assert problem["file"] == "caller.bpmn" and problem["line"] == 8


def test_missing_and_invalid_forms_are_refused():
    with pytest.raises(DiagramRejected) as exc_info:
        definition_upload(files=fixture_files("spiff_form.bpmn", "review-schema.json"), uploaded_by=None)
    problem = problem_for(problems_of(exc_info), "review", "review-uischema.json", "not uploaded")
    assert problem["file"] == "spiff_form.bpmn" and problem["line"] > 0
    with pytest.raises(DiagramRejected) as exc_info:
        definition_upload(
            files=fixture_files("spiff_form.bpmn", "review-uischema.json")
            + [("review-schema.json", json.dumps({"type": "nonsense"}).encode())],
            uploaded_by=None,
        )
    problem = problems_of(exc_info)[0]
    assert problem["file"] == "review-schema.json" and "JSON Schema" in problem["message"]


def test_camunda_form_key_files_are_attached():
    [definition] = definition_upload(files=fixture_files("camunda_approval.bpmn", "request.json"), uploaded_by=None)
    assert definition.dialect == "camunda"
    assert [f.name for f in definition.files.all()] == ["request.json"]


def test_every_problem_of_every_file_is_listed():
    with pytest.raises(DiagramRejected) as exc_info:
        definition_upload(
            files=fixture_files("broken_structure.bpmn", "unsafe_code.bpmn", "business_rule.bpmn", "unsafe.dmn")
            + [("notes.txt", b"hello"), ("empty.bpmn", b"")],
            uploaded_by=None,
        )
    problems = problems_of(exc_info)
    files = {p["file"] for p in problems}
    assert {"broken_structure.bpmn", "unsafe_code.bpmn", "unsafe.dmn", "notes.txt", "empty.bpmn"} <= files
    assert exc_info.value.code == "diagram_rejected"
    assert f"{len(problems)} problems" in exc_info.value.message
    assert not ProcessDefinition.objects.exists()


def test_published_signal_carries_new_definitions_and_actor():
    received = []

    def receiver(sender, *, definitions, actor, **kwargs):
        received.append(([d.process_key for d in definitions], actor))

    definition_published.connect(receiver, dispatch_uid="test-receiver")
    try:
        definition_upload(files=fixture_files("minimal.bpmn"), uploaded_by=None)
        definition_upload(files=fixture_files("minimal.bpmn"), uploaded_by=None)
    finally:
        definition_published.disconnect(dispatch_uid="test-receiver")
    assert received == [(["minimal"], None)]


def test_selectors():
    with pytest.raises(NotFound, match="no process definition 'minimal'"):
        definition_get(process_key="minimal")
    definition_upload(files=fixture_files("minimal.bpmn"), uploaded_by=None)
    changed = fixture_text("minimal.bpmn").replace('name="Approve"', 'name="Approve now"')
    definition_upload(files=[("minimal.bpmn", changed.encode())], uploaded_by=None)
    definition_upload(files=fixture_files("callee.bpmn"), uploaded_by=None)
    with pytest.raises(NotFound, match="has no version 7"):
        definition_get(process_key="minimal", version=7)
    assert [(d.process_key, d.version) for d in definition_list()] == [
        ("credit_check", 1), ("minimal", 2), ("minimal", 1)]
    assert [(d.process_key, d.version) for d in definition_list(latest_only=True)] == [
        ("credit_check", 1), ("minimal", 2)]


def test_admin_lists_definitions_read_only(client):
    admin = get_user_model().objects.create_superuser(username="root", password="pw-123456789", email="r@x.test")
    definition = definition_upload(files=fixture_files("minimal.bpmn"), uploaded_by=admin)[0]
    client.force_login(admin)
    listing = client.get("/admin/bpmn/processdefinition/")
    assert listing.status_code == 200 and b"minimal" in listing.content
    page = client.get(f"/admin/bpmn/processdefinition/{definition.pk}/change/")
    assert page.status_code == 200
    assert client.get("/admin/bpmn/processdefinition/add/").status_code == 403
