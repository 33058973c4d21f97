"""Designer, operator and auditor pages: role gates, no leaks, upload errors, incidents, instance actions, audit."""
from __future__ import annotations

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from bpmn.models import ProcessDefinition
from processes import jobs, services
from processes.models import AuditEvent, Incident, InstanceStatus, Job, JobStatus
from tests.approvals.conftest import upload_sample
from tests.bpmn.test_corpus import CORPUS, corpus_diagrams, upload_set
from tests.processes.conftest import SAMPLES
from tests.processes.test_audit import UPDATE_PAYLOAD, tamper  # noqa: F401 - the fixture lifting the append-only guard

pytestmark = pytest.mark.django_db
FIXTURES = SAMPLES.parents[1] / "tests" / "fixtures" / "bpmn" / "upload"
EXPENSE = {"employee": "Alice", "amount": 120, "category": "travel", "description": "Train"}


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def sample_files(key: str) -> list[SimpleUploadedFile]:
    folder = SAMPLES / key
    return [SimpleUploadedFile(p.name, p.read_bytes()) for p in sorted(folder.iterdir())
            if p.suffix in (".bpmn", ".json")]


def failing_incident(actor) -> Incident:
    upload_sample("failing_service")
    instance = services.instance_start(process_key="failing_service", actor=actor, data={"number": 7})
    job = Job.objects.get(instance=instance)
    Job.objects.filter(pk=job.pk).update(max_attempts=1)
    assert jobs.job_execute(job_id=job.pk) == "failed"
    return Incident.objects.get(instance=instance)


GATES = [("/definitions/", {"dana", "oscar", "audrey", "admin"}), ("/definitions/upload/", {"dana", "admin"}),
         ("/incidents/", {"oscar", "admin"}), ("/audit/", {"audrey", "admin"})]


@pytest.mark.parametrize(("url", "allowed"), GATES)
def test_role_pages_answer_403_to_everyone_else(users, url, allowed):
    for name, user in users.items():
        status = client_for(user).get(url).status_code
        assert status == (200 if name in allowed else 403), (url, name, status)
    assert Client().get(url).status_code == 302  # anonymous: to the login page


def test_nav_shows_links_by_role(users):
    def links(name):
        body = client_for(users[name]).get("/").content.decode()
        return {label for label in ("Definitions", "Incidents", "Audit") if f">{label}</a>" in body}

    assert links("alice") == set()
    assert links("dana") == {"Definitions"}
    assert links("oscar") == {"Definitions", "Incidents"}
    assert links("audrey") == {"Audit"}
    assert links("admin") == {"Definitions", "Incidents", "Audit"}


def test_definitions_list_counts_instances_by_status_without_n_plus_one(users, django_assert_max_num_queries):
    upload_sample("expense_approval")
    upload_sample("failing_service")
    for key in ("E-1", "E-2"):
        services.instance_start(process_key="expense_approval", actor=users["alice"], business_key=key, data=EXPENSE)
    done = services.instance_start(process_key="expense_approval", actor=users["alice"], data=EXPENSE)
    services.instance_cancel(instance_id=done.pk, actor=users["oscar"], reason="test")
    client = client_for(users["oscar"])
    with django_assert_max_num_queries(12):
        body = client.get("/definitions/").content.decode()
    row = re.search(r"expense_approval</code></th>(.*?)</tr>", body, re.S).group(1)
    cells = re.findall(r"<td>(.*?)</td>", row)
    # latest, versions, running, waiting, completed, cancelled, suspended, incident, uploaded, by
    assert cells[:8] == ["v1", "1", "0", "2", "0", "1", "0", "0"], cells
    assert "failing_service" in body


def test_definition_detail_lists_versions_elements_and_serves_its_xml(users, tmp_path):
    first = upload_sample("expense_approval")
    text = (SAMPLES / "expense_approval" / "expense_approval.bpmn").read_text().replace(
        'name="Expense approval"', 'name="Expense approval two"', 1)
    second = client_for(users["dana"]).post("/definitions/upload/", {"file": [
        SimpleUploadedFile("expense_approval.bpmn", text.encode()),
        *[f for f in sample_files("expense_approval") if f.name.endswith(".json")]]})
    latest = ProcessDefinition.objects.get(process_key="expense_approval", version=2)
    assert second.status_code == 302 and second["Location"] == f"/definitions/{latest.pk}/"
    page = client_for(users["audrey"]).get(f"/definitions/{first.pk}/")
    body = page.content.decode()
    assert page.status_code == 200
    assert f'href="/definitions/{latest.pk}/">v2</a>' in body and 'aria-current="page">v1<' in body
    user_task = next(k for k, m in first.elements.items() if m.get("type") == "userTask")
    assert f"<code>{user_task}</code>" in body and "/api/v1/definitions/expense_approval/xml/?version=1" in body
    assert f'data-xml-url="/definitions/{first.pk}/diagram.bpmn"' in body
    xml = client_for(users["dana"]).get(f"/definitions/{first.pk}/diagram.bpmn")
    assert xml.status_code == 200 and xml["Content-Type"].startswith("application/xml")
    assert xml.content.decode() == first.bpmn_xml
    assert client_for(users["dana"]).get("/definitions/999999/").status_code == 404


def test_upload_success_redirects_with_a_message_naming_key_and_version(users):
    response = client_for(users["dana"]).post("/definitions/upload/", {"file": sample_files("expense_approval")},
                                              follow=True)
    definition = ProcessDefinition.objects.get(process_key="expense_approval")
    assert definition.uploaded_by == users["dana"]
    assert response.redirect_chain == [(f"/definitions/{definition.pk}/", 302)]
    assert "Published expense_approval version 1." in response.content.decode()


def test_upload_of_a_broken_diagram_lists_every_element_problem(users):
    data = (FIXTURES / "broken_structure.bpmn").read_bytes()
    response = client_for(users["dana"]).post("/definitions/upload/", {
        "file": [SimpleUploadedFile("broken_structure.bpmn", data)]})
    assert response.status_code == 422
    body = response.content.decode()
    table = body[body.index('<table id="upload-errors"'):body.index("</table>", body.index('id="upload-errors"'))]
    rows = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td></tr>", table, re.S)
    by_id = {re.search(r"<code>(.*?)</code>", r[1]).group(1): r for r in rows if "<code>" in r[1]}
    assert "targetRef &#x27;missing_end&#x27;" in by_id["to_nowhere"][3] and by_id["to_nowhere"][2] == "13"
    assert "sourceRef &#x27;ghost&#x27;" in by_id["from_nowhere"][3] and by_id["from_nowhere"][2] == "14"
    assert "no outgoing" in by_id["start"][3] and "no incoming" in by_id["end"][3]
    assert "“Same id again” <span class=\"type\">(manualTask)</span>" in by_id["task"][1]  # the one on line 15
    assert "more than one element" in by_id["task"][3] and by_id["task"][2] == "15"
    assert all(r[0] == "broken_structure.bpmn" for r in rows)
    assert len(rows) >= 5 and not ProcessDefinition.objects.exists()


def test_upload_without_file_not_xml_or_too_large_is_refused_clearly(users, settings):
    client = client_for(users["dana"])
    empty = client.post("/definitions/upload/", {})
    assert empty.status_code == 422 and "Choose at least one file" in empty.content.decode()
    garbage = client.post("/definitions/upload/", {"file": [SimpleUploadedFile("x.bpmn", b"this is not xml")]})
    assert garbage.status_code == 422 and 'id="upload-errors"' in garbage.content.decode()
    assert "x.bpmn" in garbage.content.decode()
    settings.BATON_MAX_UPLOAD_BYTES = 1000
    big = (SAMPLES / "expense_approval" / "expense_approval.bpmn").read_bytes()
    assert len(big) > 1000
    large = client.post("/definitions/upload/", {"file": [SimpleUploadedFile("expense_approval.bpmn", big)]})
    assert large.status_code == 422 and re.search(r"(?i)(too large|bytes|size)", large.content.decode())
    assert not ProcessDefinition.objects.exists()


def test_corpus_files_are_imported_or_refused_never_a_500(users):
    diagrams = corpus_diagrams()
    assert diagrams, f"the BPMN corpus is missing at {CORPUS}"
    client = client_for(users["dana"])
    outcomes = set()
    for diagram in diagrams[:: max(1, len(diagrams) // 15)]:
        files = [SimpleUploadedFile(name, data) for name, data in upload_set(diagram)]
        response = client.post("/definitions/upload/", {"file": files})
        assert response.status_code in (302, 422), (diagram, response.status_code)
        if response.status_code == 422:
            assert 'id="upload-errors"' in response.content.decode(), diagram
        outcomes.add(response.status_code)
    assert outcomes == {302, 422}


def test_instances_list_never_leaks_and_filters(users):
    upload_sample("expense_approval")
    mine = services.instance_start(process_key="expense_approval", actor=users["alice"], business_key="A-1",
                                   data=EXPENSE)
    other = services.instance_start(process_key="expense_approval", actor=users["eve"], business_key="E-9",
                                    data=EXPENSE)
    alice = client_for(users["alice"]).get("/instances/").content.decode()
    assert f'href="/instances/{mine.pk}/"' in alice and f'href="/instances/{other.pk}/"' not in alice
    oscar = client_for(users["oscar"])
    both = oscar.get("/instances/").content.decode()
    assert f'href="/instances/{mine.pk}/"' in both and f'href="/instances/{other.pk}/"' in both
    found = oscar.get("/instances/?q=e-9").content.decode()
    assert f'href="/instances/{other.pk}/"' in found and f'href="/instances/{mine.pk}/"' not in found
    assert f'href="/instances/{mine.pk}/"' not in oscar.get("/instances/?status=completed").content.decode()
    bad = oscar.get("/instances/?status=nope")
    assert bad.status_code == 422 and 'aria-describedby="f-status-error"' in bad.content.decode()


def test_cancel_needs_a_reason_and_is_audited(users):
    upload_sample("expense_approval")
    instance = services.instance_start(process_key="expense_approval", actor=users["alice"], data=EXPENSE)
    page = client_for(users["oscar"]).get(f"/instances/{instance.pk}/").content.decode()
    assert f'action="/instances/{instance.pk}/cancel/"' in page and f"/instances/{instance.pk}/resume/" not in page
    assert "/cancel/" not in client_for(users["alice"]).get(f"/instances/{instance.pk}/").content.decode()
    assert client_for(users["alice"]).post(f"/instances/{instance.pk}/cancel/", {"reason": "x"}).status_code == 403
    assert client_for(users["oscar"]).post("/instances/999999/cancel/", {"reason": "x"}).status_code == 404
    oscar = client_for(users["oscar"])
    empty = oscar.post(f"/instances/{instance.pk}/cancel/", {"reason": "  "})
    assert empty.status_code == 422
    assert 'aria-describedby="reason-error"' in empty.content.decode() and "Give a reason" in empty.content.decode()
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.WAITING
    done = oscar.post(f"/instances/{instance.pk}/cancel/", {"reason": "duplicate request"}, follow=True)
    assert done.redirect_chain[-1][0] == f"/instances/{instance.pk}/" and "cancelled" in done.content.decode()
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.CANCELLED
    event = AuditEvent.objects.get(instance=instance, command="instance_cancel")
    assert event.payload["reason"] == "duplicate request" and event.actor == users["oscar"]
    again = oscar.post(f"/instances/{instance.pk}/cancel/", {"reason": "again"}, follow=True)
    assert again.status_code == 200 and "Could not cancel" in again.content.decode()


def test_suspend_then_resume_from_the_page(users):
    upload_sample("expense_approval")
    instance = services.instance_start(process_key="expense_approval", actor=users["alice"], data=EXPENSE)
    admin = client_for(users["admin"])
    assert admin.post(f"/instances/{instance.pk}/suspend/", {"reason": "audit hold"}).status_code == 302
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.SUSPENDED
    page = admin.get(f"/instances/{instance.pk}/").content.decode()
    assert f"/instances/{instance.pk}/resume/" in page and f"/instances/{instance.pk}/suspend/" not in page
    assert admin.post(f"/instances/{instance.pk}/resume/").status_code == 302
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.WAITING


def test_incident_retry_from_the_page(users):
    incident = failing_incident(users["alice"])
    oscar = client_for(users["oscar"])
    listing = oscar.get("/incidents/?process=failing_service").content.decode()
    assert f'href="/instances/{incident.instance_id}/"' in listing and "push_invoice" in listing
    assert "Connection refused" in listing and "1 of 1" in listing
    assert f"Incident {incident.pk}" not in oscar.get("/incidents/?status=resolved").content.decode()
    bad = oscar.post(f"/incidents/{incident.pk}/retry/", {"data": '{"a": ', "next": "/incidents/"})
    assert bad.status_code == 422
    body = bad.content.decode()
    assert f'id="data-{incident.pk}-error"' in body and "Not valid JSON" in body and "{&quot;a&quot;: " in body
    url = "http://127.0.0.1:9/other"
    done = oscar.post(f"/incidents/{incident.pk}/retry/", {"data": f'{{"invoice_service_url": "{url}"}}',
                                                           "next": "https://evil.example/"}, follow=True)
    assert done.redirect_chain[-1][0] == "/incidents/" and f"Incident {incident.pk} retried" in done.content.decode()
    incident.refresh_from_db()
    job = incident.job
    job.refresh_from_db()
    assert incident.status == "resolved" and job.status == JobStatus.QUEUED and job.params["url"] == url
    assert AuditEvent.objects.filter(instance=incident.instance, command="incident_retry").count() == 1
    again = oscar.post(f"/incidents/{incident.pk}/skip/", {}, follow=True)
    assert again.status_code == 200 and "is not open" in again.content.decode()
    assert client_for(users["alice"]).post(f"/incidents/{incident.pk}/retry/").status_code == 403


def test_audit_page_filters_and_verify_shows_ok(users):
    upload_sample("expense_approval")
    first = services.instance_start(process_key="expense_approval", actor=users["alice"], data=EXPENSE)
    second = services.instance_start(process_key="expense_approval", actor=users["eve"], data=EXPENSE)
    services.instance_suspend(instance_id=second.pk, actor=users["oscar"], reason="hold")
    audrey = client_for(users["audrey"])

    def seqs(query: str) -> set[str]:
        return set(re.findall(r'href="/audit/instances/(\d+)/"', audrey.get(f"/audit/?{query}").content.decode()))

    assert seqs("") == {str(first.pk), str(second.pk)}
    assert seqs(f"instance={first.pk}") == {str(first.pk)}
    assert seqs("actor=eve") == {str(second.pk)}
    assert seqs("command=instance_suspend") == {str(second.pk)}
    assert seqs("from=2000-01-01&to=2000-01-02") == set()
    bad = audrey.get("/audit/?instance=abc&from=yesterday")
    assert bad.status_code == 422
    assert 'aria-describedby="f-instance-error"' in bad.content.decode() and "is not a date" in bad.content.decode()
    verify = audrey.post("/audit/verify/")
    assert verify.status_code == 200 and "Chain verification: OK." in verify.content.decode()
    assert f'href="/audit/instances/{second.pk}/"' in audrey.get(f"/instances/{second.pk}/").content.decode()
    assert "/audit/instances/" not in client_for(users["eve"]).get(f"/instances/{second.pk}/").content.decode()
    chain = audrey.get(f"/audit/instances/{second.pk}/").content.decode()
    assert "instance_suspend" in chain and "Chain verification: OK." in chain
    assert audrey.get("/audit/instances/999999/").status_code == 404
    assert client_for(users["oscar"]).post("/audit/verify/").status_code == 403


@pytest.mark.django_db(transaction=True)
def test_audit_verify_names_the_broken_chain_and_seq(users, tamper):
    upload_sample("expense_approval")
    instance = services.instance_start(process_key="expense_approval", actor=users["alice"], data=EXPENSE)
    event = AuditEvent.objects.filter(instance=instance).order_by("seq").first()
    tamper(UPDATE_PAYLOAD, ['{"tampered": true}', event.chain, event.seq])
    body = client_for(users["admin"]).post("/audit/verify/").content.decode()
    assert "Chain verification FAILED" in body
    assert f"<code>{event.chain}</code>, seq {event.seq}" in body


def test_refusals_are_pages_of_the_site_that_say_why(users):
    refused = client_for(users["eve"]).get("/audit/")
    assert refused.status_code == 403
    text = refused.content.decode()
    assert "<h1>Not allowed</h1>" in text and 'href="/"' in text and "Log out eve" in text
    missing = client_for(users["eve"]).get("/instances/987654/")
    assert missing.status_code == 404 and "<h1>Not found</h1>" in missing.content.decode()
