"""Every web page, for every role, passes the markup and accessibility check of tests/approvals/markup.py.

The pages are found from the URL patterns of the approvals app (approvals/urls*.py): a new route fails
``test_every_route_has_arguments`` until it is given arguments here, so no page escapes the check.
Pages answering 403/404 are checked too (they are pages); redirects, POST-only routes (405) and files are not.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

import approvals
from approvals import discussion, people
from approvals.models import Notification, StandIn, TaskAttachment
from approvals.services import task_decide
from approvals.voting import vote_cast
from bpmn.models import ProcessDefinition
from processes import services
from processes.models import HumanTask, Incident, ProcessInstance
from tests.approvals.conftest import fresh, grant_override, open_task, upload_sample
from tests.approvals.markup import css_problems, problems
from tests.approvals.test_pages_ops import FIXTURES, failing_incident

pytestmark = pytest.mark.django_db
STATIC = Path(approvals.__file__).parent / "static" / "approvals"

ROLES = ("alice", "mike", "fiona", "oscar", "dana", "audrey", "admin")  # requester .. admin (conftest USERS)
EXPENSE = {"employee": "Alice", "amount": 5000, "category": "travel", "description": "Train to Lyon"}
BOARD = {"proposal": "Open an office in Lyon", "budget": 250000}
ACTIONS = {"instance_action": ("cancel", "suspend", "resume"), "incident_action": ("retry", "skip")}
EXTRA_QUERIES = {"inbox": ("?tab=groups", "?tab=done", "?tab=mine&q=EXP&sort=-priority"),
                 "instances": ("?status=running",), "incidents": ("?status=resolved",)}


@dataclass
class World:
    users: dict
    tasks: list[HumanTask]
    instances: list[ProcessInstance]
    definitions: list[ProcessDefinition]
    incident: Incident
    attachment: TaskAttachment
    standin: StandIn
    notification: Notification


@pytest.fixture
def world(users, settings, tmp_path) -> World:
    """Realistic data: expense instances at each stage, a board vote, an incident, comments, files, a stand-in."""
    settings.MEDIA_ROOT = str(tmp_path / "files")
    board = Group.objects.get_or_create(name="Board")[0]
    for name in ("mike", "fiona", "lena"):
        users[name].groups.add(board)
    definitions = [upload_sample("expense_approval"), upload_sample("board_approval")]
    incident = failing_incident(users["alice"])
    definitions.append(incident.instance.definition)
    at_finance = services.instance_start(process_key="expense_approval", actor=users["alice"], business_key="EXP-1",
                                         data=EXPENSE)
    approved = task_decide(human_task_id=open_task(at_finance, "manager_approval").pk, actor=fresh(users["mike"]),
                           data={}, decision="approve", reason="Within budget")
    at_manager = services.instance_start(process_key="expense_approval", actor=users["alice"],
                                         business_key="EXP-2", data=EXPENSE)
    manager_task = open_task(at_manager, "manager_approval")
    discussion.comment_add(human_task_id=manager_task.pk, actor=users["mike"], text="Where is the receipt?")
    attachment = discussion.attachment_add(human_task_id=manager_task.pk, actor=users["mike"],
                                           filename="receipt.txt", content_type="text/plain", data=b"12 EUR")
    voted = services.instance_start(process_key="board_approval", actor=users["alice"], data=BOARD)
    vote = open_task(voted, "board_vote")
    vote_cast(human_task_id=vote.pk, actor=fresh(users["mike"]), outcome="approved")
    standin = people.standin_set(actor=users["mike"], user=users["mike"], stand_in=users["max"], reason="holiday")
    notification = Notification.objects.filter(user=users["mike"]).first() or Notification.objects.create(
        user=users["mike"], kind="assigned", title="Task", url=f"/tasks/{manager_task.pk}/")
    tasks = [HumanTask.objects.get(pk=approved.pk), manager_task, open_task(at_finance, "finance_approval"), vote]
    return World(users=users, tasks=tasks, instances=[at_finance, at_manager, voted, incident.instance],
                 definitions=definitions, incident=incident, attachment=attachment, standin=standin,
                 notification=notification)


def routes() -> list[URLPattern]:
    """The named URL patterns of the approvals app (approvals/urls.py and the modules it includes)."""
    found: list[URLPattern] = []

    def walk(patterns, inside: bool) -> None:
        for entry in patterns:
            if isinstance(entry, URLResolver):
                module = getattr(entry.urlconf_module, "__name__", str(entry.urlconf_name))
                walk(entry.url_patterns, inside or module.startswith("approvals."))
            elif inside and entry.name:
                found.append(entry)

    walk(get_resolver().url_patterns, False)
    return found


def _params(route: URLPattern) -> list[str]:
    converters = getattr(route.pattern, "converters", None)
    return list(converters) if converters else list(route.pattern.regex.groupindex)


def arguments(world: World) -> dict[str, list[dict]]:
    """Keyword arguments to reverse each approvals route with, from the world's objects."""
    task_pks = [t.pk for t in world.tasks]
    instance_pks = [i.pk for i in world.instances]
    definition_pks = [d.pk for d in world.definitions]
    by_name = {
        "task": task_pks, "task_claim": task_pks, "task_delegate": task_pks, "task_reassign": task_pks,
        "task_comment": task_pks, "task_attach": task_pks, "instance": instance_pks,
        "instance_action": instance_pks, "audit_instance": instance_pks, "instance_diagram_xml": instance_pks,
        "definition_detail": definition_pks,
        "definition_diagram_xml": definition_pks, "incident_action": [world.incident.pk],
        "away_end": [world.standin.pk], "notification_read": [world.notification.pk],
    }
    result: dict[str, list[dict]] = {}
    for route in routes():
        params = _params(route)
        if not params:
            result[route.name] = [{}]
        elif route.name == "task_attachment":
            result[route.name] = [{"pk": world.attachment.task_id, "attachment_pk": world.attachment.pk}]
        elif route.name in by_name and set(params) <= {"pk", "action"}:
            actions = ACTIONS.get(route.name, ("",)) if "action" in params else ("",)
            result[route.name] = [{"pk": pk, **({"action": a} if a else {})}
                                  for pk, a in itertools.product(by_name[route.name], actions)]
    return result


def opens(world: World, role: str) -> set[str]:
    """Pages the role opens by design (a floor: the walk must have checked these, not an error page instead)."""
    approved, manager_task, finance_task, vote = (f"/tasks/{t.pk}/" for t in world.tasks)
    every = {"/", "/?tab=groups", "/?tab=done", "/start/", "/me/away/", "/notifications/", "/notifications/settings/"}
    first = world.instances[0].pk
    by_role = {
        "alice": {f"/instances/{i.pk}/" for i in world.instances},
        "mike": {approved, manager_task, vote, f"/instances/{world.instances[1].pk}/"},
        "fiona": {finance_task, vote},
        "oscar": {"/incidents/", "/incidents/?status=resolved", "/definitions/", f"/instances/{first}/",
                  f"/instances/{first}/cancel/", f"/instances/{first}/resume/", manager_task},
        "dana": {"/definitions/", "/definitions/upload/", f"/definitions/{world.definitions[0].pk}/"},
        "audrey": {"/audit/", f"/audit/instances/{first}/", f"/instances/{first}/", "/definitions/"},
    }
    if role == "admin":
        return every.union(*by_role.values())
    return every | by_role[role]


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _is_html(response) -> bool:
    return response.get("Content-Type", "").startswith("text/html") and not getattr(response, "streaming", False)


def _check(label: str, response, found: list[str]) -> None:
    for problem in problems(response.content.decode()):
        found.append(f"{label} [{response.status_code}]: {problem}")


def test_every_route_has_arguments(world):
    names = {route.name for route in routes()}
    assert {"inbox", "task", "start", "instance", "definitions", "audit", "login"} <= names, names
    missing = sorted(names - set(arguments(world)))
    assert missing == [], f"routes without arguments in tests/approvals/test_page_markup.py: {missing}"


@pytest.mark.parametrize("role", ROLES)
def test_every_page_a_role_opens_passes_the_markup_check(world, role):
    client = client_for(world.users[role])
    found: list[str] = []
    statuses: dict[str, int] = {}
    for name, variants in sorted(arguments(world).items()):
        if name == "logout":
            continue  # a GET would log out (and Django answers 405 anyway)
        for kwargs in variants:
            url = reverse(name, kwargs=kwargs)
            for query in ("", *EXTRA_QUERIES.get(name, ())):
                response = client.get(url + query)
                statuses[url + query] = response.status_code
                if response.status_code in (301, 302, 405) or not _is_html(response):
                    continue
                _check(f"{role} GET {url}{query}", response, found)
    ok = {url for url, status in statuses.items() if status == 200}
    missing = sorted(opens(world, role) - ok)
    assert missing == [], f"{role} could not open {missing}, so they were not checked: {statuses}"
    assert found == [], f"{len(found)} markup problems:\n" + "\n".join(found)


def test_error_states_pass_the_markup_check(world):
    users, found = world.users, []
    dana, mike, alice = client_for(users["dana"]), client_for(users["mike"]), client_for(users["alice"])
    manager_task = world.tasks[1]

    def check(label, response, status, *, shows_error=True):
        assert response.status_code == status, (label, response.status_code)
        body = response.content.decode()
        if shows_error:  # the error state itself is on the page (not a page without the error)
            assert 'role="alert"' in body or '-error"' in body, (label, body[:3000])
        _check(label, response, found)

    broken = SimpleUploadedFile("broken_structure.bpmn", (FIXTURES / "broken_structure.bpmn").read_bytes())
    check("dana POST /definitions/upload/ (broken diagram)", dana.post("/definitions/upload/", {"file": [broken]}),
          422)
    check("dana POST /definitions/upload/ (no file)", dana.post("/definitions/upload/", {}), 422)
    missing = mike.post(f"/tasks/{manager_task.pk}/", {"reason": "kept"})
    assert 'id="f-decision-error"' in missing.content.decode()
    check("mike POST task (no decision)", missing, 200)
    check("mike POST task (reject without reason)",
          mike.post(f"/tasks/{manager_task.pk}/", {"decision": "reject", "reason": ""}), 200)
    check("mike POST comment (empty)", mike.post(f"/tasks/{manager_task.pk}/comments/", {"text": " "}), 200)
    check("mike POST delegate (unknown user)",
          mike.post(f"/tasks/{manager_task.pk}/delegate/", {"to_user": "nobody", "reason": "x"}), 200)
    check("mike POST attachment (no file)", mike.post(f"/tasks/{manager_task.pk}/attachments/", {}), 200)
    start = alice.post("/start/", {"process_key": "expense_approval", "employee": "A", "amount": "lots"})
    check("alice POST /start/ (invalid data)", start, 200)
    check("mike POST /me/away/ (bad date)", mike.post("/me/away/", {"stand_in": "mike", "starts_at": "2026-13-01"}),
          200)
    check("fiona POST vote (reject without reason)",
          client_for(users["fiona"]).post(f"/tasks/{world.tasks[3].pk}/", {"decision": "rejected", "reason": ""}),
          200)
    own = services.instance_start(process_key="expense_approval", actor=users["mike"], business_key="EXP-MIKE",
                                  data=EXPENSE)
    own_task = open_task(own, "manager_approval")
    denied = mike.post(f"/tasks/{own_task.pk}/", {"decision": "approve", "reason": "ok"})
    assert 'id="sod-denied"' in denied.content.decode()
    check("mike POST own task (separation of duties)", denied, 200)
    grant_override(users["mike"])
    mike = client_for(fresh(users["mike"]))
    check("mike GET own task (may override)", mike.get(f"/tasks/{own_task.pk}/"), 200, shows_error=False)
    check("mike POST override without reason", mike.post(f"/tasks/{own_task.pk}/", {
        "decision": "approve", "reason": "ok", "override_sod": "on"}), 200)
    oscar = client_for(users["oscar"])
    check("oscar POST reassign (blank reason)",
          oscar.post(f"/tasks/{manager_task.pk}/reassign/", {"to_user": "max", "reason": " "}), 200)
    check("oscar POST incident retry (bad JSON)", oscar.post(f"/incidents/{world.incident.pk}/retry/", {
        "data": '{"a": ', "next": "/incidents/"}), 422)
    check("oscar GET /incidents/?process=failing_service", oscar.get("/incidents/?process=failing_service"), 200,
          shows_error=False)
    check("oscar POST cancel (no reason)",
          oscar.post(f"/instances/{world.instances[1].pk}/cancel/", {"reason": ""}), 422)
    check("oscar GET /instances/?status=bogus", oscar.get("/instances/?status=bogus"), 422)
    check("audrey GET /audit/?from=bogus", client_for(users["audrey"]).get("/audit/?from=bogus"), 422)
    check("anonymous GET /login/", Client().get("/login/"), 200, shows_error=False)
    check("anonymous POST /login/ (wrong password)",
          Client().post("/login/", {"username": "alice", "password": "wrong"}), 200)
    check("mike GET /no-such-page/", mike.get("/no-such-page/"), 404, shows_error=False)
    check("eve GET a task not hers", client_for(users["eve"]).get(f"/tasks/{manager_task.pk}/"), 404, shows_error=False)
    check("alice GET /audit/", alice.get("/audit/"), 403, shows_error=False)
    assert found == [], f"{len(found)} markup problems:\n" + "\n".join(found)


def test_stylesheets_set_no_width_wider_than_a_phone():
    """The app's own stylesheets (not vendored ones) fix no width over 375 px: pages stay readable on a phone."""
    sheets = sorted(p for p in STATIC.rglob("*.css") if "vendor" not in p.parts)
    assert sheets, STATIC
    found = [f"{sheet.relative_to(STATIC.parents[2])}:{problem}" for sheet in sheets
             for problem in css_problems(sheet.read_text())]
    assert found == [], "\n".join(found)


# The checker itself: each rule catches its breakage, and a clean page passes.

PAGE = """<!doctype html><html lang="en"><head><title>t</title></head><body>
<header><nav aria-label="Main"><a href="/">Inbox</a></nav></header>
<main id="main" tabindex="-1"><h1>Title</h1>{}</main></body></html>"""
CLEAN = """<h2>Form</h2><form method="post"><input type="hidden" name="csrfmiddlewaretoken" value="x">
<label for="a">A</label><input id="a" name="a" aria-describedby="a-help"><p id="a-help">Help</p>
<label>B <select name="b"><option>1</option></select></label>
<textarea name="c" aria-label="C" aria-invalid="true" aria-describedby="c-error"></textarea>
<p id="c-error">Required</p><input type="submit"><input type="hidden" name="h">
<button type="submit"><span aria-hidden="true">&#10003;</span> Save</button></form>
<h3>Table</h3><div class="scroll"><table><thead><tr><th scope="col">H</th></tr></thead>
<tbody><tr><th scope="row">r</th><td><img src="x.png" alt=""></td></tr></tbody></table></div>
<h2>Links</h2><a href="/x" aria-label="Close"><span aria-hidden="true">x</span></a>
<a href="/y"><img src="y.png" alt="Home"></a><a href="#main">Top</a><a href="#">Nowhere</a>
<div style="max-width: 900px; width: 300px">narrow</div>"""


def test_checker_passes_a_clean_page():
    assert problems(PAGE.format(CLEAN)) == []


@pytest.mark.parametrize(("html", "expected"), [
    (PAGE.replace(' lang="en"', "").format(""), "html-lang: <html>: the <html> element has no lang"),
    (PAGE.format("<h1>Second</h1>"), "one-h1: expected exactly one <h1>, found 2 (lines: 3, 3)"),
    (PAGE.replace("<h1>Title</h1>", "").format(""), "one-h1: expected exactly one <h1>, found 0 (lines: none)"),
    (PAGE.format("<h3>Deep</h3>"), "line 3: heading-order: <h3>: <h3> 'Deep' follows h1 (skips a level)"),
    (PAGE.format('<input id="q" name="q">'), 'line 3: label: <input id="q" name="q">: form control without a label'),
    (PAGE.format('<select name="s"></select>'), 'line 3: label: <select name="s">: form control without a label'),
    (PAGE.format('<textarea name="t" placeholder="T"></textarea>'), 'label: <textarea name="t">'),
    (PAGE.format('<input type="button" name="b">'), 'line 3: name: <input name="b" type="button">: input button'),
    (PAGE.format('<p id="main">dup</p>'), 'line 3: unique-id: <p id="main">: id "main" already used on line 3'),
    (PAGE.format('<label for="nope">X</label>'), 'line 3: idref: <label>: <label for="nope"> names an id that'),
    (PAGE.format('<p aria-describedby="main gone">x</p>'),
     'line 3: idref: <p>: aria-describedby names id "gone", which is not on the page'),
    (PAGE.format('<p aria-labelledby="gone">x</p>'), 'idref: <p>: aria-labelledby names id "gone"'),
    (PAGE.format('<input name="u" aria-label="U" list="people">'), 'idref: <input name="u">: list names id "people"'),
    (PAGE.format('<button aria-controls="menu">Menu</button>'), 'idref: <button>: aria-controls names id "menu"'),
    (PAGE.format('<a href="#gone">Skip</a>'), 'line 3: idref: <a href="#gone">: href="#gone" points to an id'),
    (PAGE.format('<form hx-post="/c" hx-target="#comments"></form>'), 'idref: <form>: hx-target="#comments"'),
    (PAGE.format("<table><tr><td>1</td></tr></table>"), "line 3: table-th: <table>: table without any <th>"),
    (PAGE.format("<table><thead><tr><th>H</th></tr></thead></table>"),
     "line 3: th-scope: <th>: <th> 'H' in <thead> has no scope"),
    (PAGE.format('<img src="a.png">'), "line 3: img-alt: <img>: image without alt"),
    (PAGE.format('<a href="/x" tabindex="2">x</a>'), 'line 3: tabindex: <a href="/x">: positive tabindex=2'),
    (PAGE.format("<button></button>"), "line 3: name: <button>: <button> without accessible text"),
    (PAGE.format('<button><span aria-hidden="true">x</span></button>'), "name: <button>: <button> without"),
    (PAGE.format('<a href="/x"> </a>'), 'line 3: name: <a href="/x">: <a> without accessible text'),
    (PAGE.format('<a href="/x"><img src="i.png" alt=""></a>'), 'name: <a href="/x">: <a> without'),
    (PAGE.format('<form method="POST"><button>Go</button></form>'),
     "line 3: csrf: <form>: POST form without the csrfmiddlewaretoken hidden input"),
    (PAGE.format('<label for="main"></label>'), 'line 3: label-text: <label>: label without text'),
    (PAGE.format('<form><form><button>x</button></form></form>'), "line 3: nested-form: <form>: form inside"),
    (PAGE.format('<a href="/x"><button>x</button></a>'), "line 3: nested-interactive: <button>: <button> inside"),
    (PAGE.format('<form method="post"><input type="hidden" name="csrfmiddlewaretoken">'
                 '<input type="file" name="f" aria-label="F"></form>'),
     'line 3: file-form: <input name="f" type="file">: file input in a form without'),
    (PAGE.format('<input name="q" aria-label="Q" aria-invalid="true">'),
     'line 3: error-link: <input name="q">: aria-invalid="true" without aria-describedby'),
    (PAGE.format('<input name="q" aria-label="Q"><p id="q-error">Wrong</p>'),
     'line 3: error-link: <p id="q-error">: error message id "q-error" is not named by any control'),
    (PAGE.format('<div style="color: red; width: 600px">x</div>'),
     "line 3: phone-width: <div>: inline style width: 600px is wider than a 375 px phone"),
    (PAGE.format('<table style="min-width:400px"><tr><th>x</th></tr></table>'), "phone-width: <table>: inline style"),
])
def test_checker_catches_each_rule(html, expected):
    found = problems(html)
    assert any(expected in problem for problem in found), found
    assert len(found) == 1, found  # precise: one broken rule, one message


def test_css_checker_catches_fixed_widths_only():
    css = ".a{max-width:900px;width:100%}\n.b{ width: 300px }\n.c{color:red;\nmin-width:480px}\n.d{width:376px}"
    assert css_problems(css) == ["line 4: phone-width: min-width: 480px is wider than a 375 px phone",
                                 "line 5: phone-width: width: 376px is wider than a 375 px phone"]


def test_checker_accepts_labels_by_wrapping_and_aria_and_ignores_get_forms():
    html = PAGE.format('<form method="get"><label>Q <input name="q"></label><input name="r" aria-labelledby="rl">'
                       '<span id="rl">R</span><button>Search</button></form><h2>A</h2><h3>B</h3><h2>C</h2>')
    assert problems(html) == []
