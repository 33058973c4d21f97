"""Review findings (helper R): each test fails today and passes once the finding is fixed.

Every test names the defect it proves. A bad value sent by a browser must get a
clear 4xx (or be cleaned), never a 500; a file the server serves inline must
not run script in the app's origin. Tests marked "PostgreSQL" fail only there
(SQLite stores NUL characters; PostgreSQL refuses them with a DataError).
"""
from __future__ import annotations

import json
import shutil

import pytest
from django.test import Client

from approvals.models import Delegation, TaskComment
from processes.models import HumanTaskStatus, ProcessInstance
from tests.approvals.conftest import upload_sample
from tests.processes.conftest import SAMPLES, upload

EXPENSE = {"employee": "Alice", "amount": "120", "category": "travel", "description": "Train"}


def client_for(user) -> Client:
    client = Client(raise_request_exception=False)  # see the status a browser would get, not the exception
    client.force_login(user)
    return client


def start_expense(user, key="EXP-1") -> ProcessInstance:
    response = client_for(user).post("/start/", {"process_key": "expense_approval", "business_key": key, **EXPENSE})
    assert response.status_code == 302, response.content.decode()[:2000]
    return ProcessInstance.objects.get(business_key=key)


def _stored_nul(task) -> bool:
    """True if a NUL reached the instance's data, its audit payloads or the task's delegations."""
    instance = ProcessInstance.objects.get(pk=task.instance_id)
    stored = [instance.data, *instance.audit_events.values_list("payload", flat=True),
              *Delegation.objects.filter(task_id=task.pk).values_list("reason", flat=True)]
    return "\\u0000" in json.dumps(stored)


def manager_task(users):
    upload_sample("expense_approval")
    instance = start_expense(users["alice"])
    return instance.human_tasks.get(status=HumanTaskStatus.OPEN)


# --- 500s on bad query / form values ----------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("priority", ["--5", "²", "-²"])
def test_inbox_priority_filter_that_is_not_a_number_is_ignored_not_a_500(users, priority):
    """approvals/inbox.py InboxFilters.from_params: ``lstrip("-").isdigit()`` passes "--5" and "²"; int() raises."""
    response = client_for(users["alice"]).get("/", {"priority": priority})
    assert response.status_code == 200


@pytest.mark.django_db
def test_audit_instance_filter_with_a_unicode_digit_is_a_field_error_not_a_500(users):
    """approvals/ops.py _int: ``"²".isdigit()`` is True but ``int("²")`` raises ValueError."""
    response = client_for(users["audrey"]).get("/audit/", {"instance": "²"})
    assert response.status_code == 422
    assert "is not a whole number" in response.content.decode()


@pytest.mark.django_db
def test_audit_to_date_at_the_end_of_the_calendar_is_not_a_500(users):
    """approvals/ops.py audit_events_filtered: ``values["to"] + timedelta(days=1)`` overflows for 9999-12-31."""
    response = client_for(users["audrey"]).get("/audit/", {"to": "9999-12-31"})
    assert response.status_code in (200, 422)


@pytest.mark.django_db
def test_away_until_the_end_of_the_calendar_is_not_a_500(users):
    """approvals/views.py _day: ``day + timedelta(days=1)`` overflows for an end date of 9999-12-31."""
    response = client_for(users["alice"]).post("/me/away/", {"stand_in": "mike", "ends_at": "9999-12-31"})
    assert response.status_code in (200, 302, 422)
    if response.status_code != 302:
        assert "ends_at" in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("amount", ["NaN", "nan", "Infinity", "1e999"])
def test_start_form_number_that_is_not_finite_is_a_field_error_not_a_500(users, amount):
    """approvals/forms_render.py data_from_post: float("NaN") / float("1e999") pass the JSON Schema check and
    then fail deep in the engine ("audit payloads cannot hold NaN or infinity"): 500."""
    upload_sample("expense_approval")
    response = client_for(users["alice"]).post(
        "/start/", {"process_key": "expense_approval", "business_key": "N-1", **EXPENSE, "amount": amount})
    assert response.status_code in (200, 422)
    assert 'id="f-amount-error"' in response.content.decode()
    assert not ProcessInstance.objects.filter(business_key="N-1").exists()


# --- NUL characters (PostgreSQL text and jsonb refuse them: DataError, 500) ----------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("who,url,params", [
    ("alice", "/", {"q": "a\x00b"}),
    ("oscar", "/instances/", {"q": "a\x00b"}),
    ("audrey", "/audit/", {"actor": "a\x00b"}),
    ("audrey", "/audit/", {"command": "a\x00b"}),
    ("alice", "/", {"process": "a\x00b"}),
    ("oscar", "/instances/", {"process": "a\x00b"}),
    ("oscar", "/incidents/", {"process": "a\x00b"}),
])
def test_search_filters_with_a_nul_character_are_not_a_500(users, who, url, params):
    """PostgreSQL only: a NUL in a search parameter reaches the SQL filter (inbox q, instances q, audit actor and
    command, process) and PostgreSQL raises DataError. Fails on PostgreSQL; passes on SQLite."""
    response = client_for(users[who]).get(url, params)
    assert response.status_code in (200, 400, 422)


@pytest.mark.django_db
def test_comment_with_a_nul_character_is_refused_or_cleaned(users):
    """approvals/discussion.py comment_add stores the text as given: SQLite keeps the NUL, PostgreSQL 500s."""
    task = manager_task(users)
    response = client_for(users["mike"]).post(f"/tasks/{task.pk}/comments/", {"text": "hi\x00there"})
    assert response.status_code in (200, 302, 400, 422)
    assert not any("\x00" in c.body for c in TaskComment.objects.filter(task=task))


@pytest.mark.django_db
def test_start_business_key_with_a_nul_character_is_refused_or_cleaned(users):
    """approvals/views.py start: the posted business key goes to the engine unchecked (PostgreSQL: 500)."""
    upload_sample("expense_approval")
    response = client_for(users["alice"]).post(
        "/start/", {"process_key": "expense_approval", "business_key": "K\x00-1", **EXPENSE})
    assert response.status_code == 400 and "NUL" in response.content.decode()
    assert not any("\x00" in key for key in ProcessInstance.objects.values_list("business_key", flat=True))


@pytest.mark.django_db
def test_decide_and_delegate_reasons_with_a_nul_character_are_refused_or_cleaned(users):
    """approvals/views_task.py task_page / _handover: reasons and form values reach jsonb / text columns as posted."""
    task = manager_task(users)
    mike = client_for(users["mike"])
    delegated = mike.post(f"/tasks/{task.pk}/delegate/", {"to_user": "sue", "reason": "away\x00"})
    assert delegated.status_code in (200, 302, 400, 422)
    decided = client_for(users["sue"] if delegated.status_code == 302 else users["mike"]).post(
        f"/tasks/{task.pk}/", {"decision": "approve", "reason": "fine\x00"})
    assert decided.status_code in (200, 302, 400, 422)
    assert not _stored_nul(task)


@pytest.mark.django_db
def test_api_decide_data_with_a_nul_character_is_a_422_not_a_500(users):
    """api/tasks.py DecideSerializer.data is a DictField: its strings are not checked for NUL as CharFields are,
    and PostgreSQL's jsonb refuses ``\\u0000`` (500). Fails on PostgreSQL; SQLite stores it."""
    task = manager_task(users)
    response = client_for(users["mike"]).post(
        f"/api/v1/tasks/{task.pk}/decide/", {"decision": "approve", "data": {"reason": "fine\x00"}},
        content_type="application/json")
    assert response.status_code in (200, 400, 422)
    assert not _stored_nul(task)


# --- XSS through the diagram XML served inline ---------------------------------------------------------------------

SCRIPT = ('<xhtml:script xmlns:xhtml="http://www.w3.org/1999/xhtml">'
          'fetch("/").then(function () { document.title = "owned"; })</xhtml:script>')


def _upload_with_script(tmp_path):
    folder = tmp_path / "expense_approval"
    shutil.copytree(SAMPLES / "expense_approval", folder)
    path = folder / "expense_approval.bpmn"
    xml = path.read_text()
    at = xml.index("<bpmn:extensionElements>") + len("<bpmn:extensionElements>")  # any foreign element is valid
    path.write_text(xml[:at] + SCRIPT + xml[at:])
    return upload(path)[0]


@pytest.mark.django_db
def test_diagram_xml_served_inline_cannot_run_script(users, tmp_path):
    """approvals/views_instance.py _xml: the uploaded BPMN is served inline as application/xml from the app's
    origin, so an XHTML <script> a designer put in it runs in the browser of whoever opens the "View" link
    (an auditor, an admin): stored XSS from the designer role. The response must forbid script (CSP sandbox)
    or not be renderable as a document."""
    definition = _upload_with_script(tmp_path)
    response = client_for(users["audrey"]).get(f"/definitions/{definition.pk}/diagram.bpmn")
    assert response.status_code == 200 and b"xhtml:script" in response.content
    csp = response.get("Content-Security-Policy", "")
    locked = "sandbox" in csp or "script-src 'none'" in csp or "default-src 'none'" in csp
    downloaded = response.get("Content-Disposition", "").startswith("attachment")
    assert locked or downloaded, dict(response.headers)


@pytest.mark.django_db
def test_start_business_key_longer_than_the_column_is_a_field_error(users):
    """approvals/views.py start: the business key is not checked against ProcessInstance.business_key's
    max_length (255); PostgreSQL refuses the insert (DataError, 500) and SQLite silently stores it. The API
    (api/instances.py, max_length=255) answers 422; the page should say so next to the field."""
    upload_sample("expense_approval")
    response = client_for(users["alice"]).post(
        "/start/", {"process_key": "expense_approval", "business_key": "K" * 300, **EXPENSE})
    assert response.status_code in (200, 422)
    assert "255" in response.content.decode()
    assert not ProcessInstance.objects.exists()


# --- guards (pass today): state changes only by POST ----------------------------------------------------------------


@pytest.mark.django_db
def test_guard_state_changing_routes_refuse_get(users):
    """Guard: every route that changes state answers 405 to GET (no CSRF-free state change through a link)."""
    task = manager_task(users)
    mike, oscar, audrey = client_for(users["mike"]), client_for(users["oscar"]), client_for(users["audrey"])
    for client, url in [(mike, f"/tasks/{task.pk}/claim/"), (mike, f"/tasks/{task.pk}/delegate/"),
                        (oscar, f"/tasks/{task.pk}/reassign/"), (mike, f"/tasks/{task.pk}/comments/"),
                        (mike, f"/tasks/{task.pk}/attachments/"), (mike, "/me/away/1/end/"),
                        (mike, "/notifications/read-all/"), (oscar, "/incidents/1/retry/"),
                        (audrey, "/audit/verify/")]:
        assert client.get(url).status_code == 405, url
    task.refresh_from_db()
    assert task.assignee_id is None and not TaskComment.objects.exists()


# --- an oversized upload read whole into memory before its size is checked ---------------------------------------


@pytest.mark.django_db
def test_api_upload_with_idempotency_key_is_refused_by_size_before_being_read_into_memory(users, settings):
    """api/idempotency.py _fingerprint (used by api/discussion.py's upload): ``b"".join(f.chunks())`` holds the
    whole upload in memory to hash it, before ``attachment_check_size`` refuses it, so one request with an
    Idempotency-Key and a large file costs its full size in RAM. Hash chunk by chunk instead."""
    import tracemalloc

    from django.core.files.uploadedfile import SimpleUploadedFile
    from rest_framework.test import APIRequestFactory, force_authenticate

    from api.discussion import TaskAttachmentListView

    settings.BATON_ATTACHMENT_MAX_BYTES = 1024
    task = manager_task(users)
    size = 12 * 1024 * 1024
    request = APIRequestFactory().post(
        f"/api/v1/tasks/{task.pk}/attachments/", {"file": SimpleUploadedFile("big.bin", b"\0" * size)},
        format="multipart", HTTP_IDEMPOTENCY_KEY="big-1")
    force_authenticate(request, user=users["mike"])
    tracemalloc.start()
    try:
        response = TaskAttachmentListView.as_view()(request, task_id=task.pk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert response.status_code == 422
    assert peak < size // 3, f"peak {peak} bytes for a {size}-byte upload refused by its size"


@pytest.mark.django_db
def test_guard_user_text_is_escaped_on_the_pages(users):
    """Guard: business key, comment text and attachment name written by users are escaped wherever shown."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload_sample("expense_approval")
    evil = "<script>alert(1)</script>"
    instance = start_expense(users["alice"], key=evil)
    task = instance.human_tasks.get(status=HumanTaskStatus.OPEN)
    mike = client_for(users["mike"])
    assert mike.post(f"/tasks/{task.pk}/comments/", {"text": f"see {evil}"}).status_code == 302
    attached = mike.post(f"/tasks/{task.pk}/attachments/", {"file": SimpleUploadedFile("<img src=x onerror=alert(1)>.txt",
                                                                                          b"data")})
    assert attached.status_code == 302
    pages = [mike.get("/?tab=groups"), mike.get(f"/tasks/{task.pk}/"), mike.get(f"/instances/{instance.pk}/"),
             client_for(users["oscar"]).get("/instances/"), client_for(users["audrey"]).get("/audit/")]
    for page in pages:
        body = page.content.decode()
        assert page.status_code == 200 and "<script>alert(1)" not in body and "<img src=x" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[1].content.decode()


# --- information leak in filter choices ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_instances_page_of_a_plain_user_does_not_list_processes_they_have_no_part_in(users, tmp_path):
    """approvals/views_ops.py instances: the page has no role gate (a requester sees their own instances, which
    is fine), but its process filter lists ``ops.process_keys()``: every published process key, including a
    process restricted to Finance that alice may not start and has no instance of. docs/web-ui.md says the page
    is for operators and auditors (403 for the rest): either gate it, or take the choices from the user's own
    instances (``instances_for(user).values_list("definition__process_key")``)."""
    from approvals.selectors import can_start
    from tests.approvals.conftest import upload_variant

    upload_sample("expense_approval")
    upload_variant("rejection_loop", tmp_path, process_properties={"starters": "Finance"})
    assert not can_start(user=users["alice"], process_key="rejection_loop")
    start_expense(users["alice"])
    response = client_for(users["alice"]).get("/instances/")
    assert response.status_code in (200, 403)
    assert "rejection_loop" not in response.content.decode()
    assert "rejection_loop" in client_for(users["oscar"]).get("/instances/").content.decode()
