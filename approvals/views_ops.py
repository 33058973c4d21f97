"""Designer, operator and auditor pages. Thin: check the role, parse, call one service/selector, render."""
from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from bpmn.services import definition_upload as bpmn_upload
from core.errors import BatonError, NotFound, PermissionDenied, ValidationError
from processes import services as engine
from processes.audit import audit_verify_report
from processes.models import AuditEvent, InstanceStatus, ProcessInstance

from . import ops
from .diagram import definition_marks
from .selectors import instance_get_for


def _gate(request, *roles: str) -> None:
    try:
        ops.require_role(request.user, *roles)
    except PermissionDenied as exc:
        raise DjangoPermissionDenied(exc.message) from None


def _errors(exc: BatonError) -> dict[str, str]:
    details = exc.details if isinstance(exc, ValidationError) and isinstance(exc.details, list) else []
    return {d.get("field", ""): d.get("message", "") for d in details if isinstance(d, dict)} or {"": exc.message}


def _page(request, rows):
    return Paginator(rows, ops.PAGE_SIZE).get_page(request.GET.get("page"))


@login_required
@require_GET
def definitions(request):
    _gate(request, *ops.READ_DEFINITIONS)
    return render(request, "approvals/ops/definitions.html", {
        "rows": ops.definition_summaries(), "statuses": InstanceStatus.choices,
        "can_upload": ops.has_role(request.user, "designer")})


def _definition(request, pk: int):
    _gate(request, *ops.READ_DEFINITIONS)
    try:
        return ops.definition_get(definition_id=pk)
    except NotFound:
        raise Http404("definition not found") from None


@login_required
@require_GET
def definition_detail(request, pk):
    definition = _definition(request, pk)
    counts = ops.status_counts(by="definition_id", values=[definition.pk])[definition.pk]
    return render(request, "approvals/ops/definition_detail.html", {
        "definition": definition, "versions": ops.definition_versions(definition),
        "elements": ops.definition_elements(definition),
        "counts": [(label, counts[value]) for value, label in InstanceStatus.choices],
        "api_xml_url": reverse("api:definition-xml", args=[definition.process_key]) + f"?version={definition.version}",
        "diagram": definition_marks(definition)})


@login_required
@require_http_methods(["GET", "POST"])
def definition_upload(request):
    _gate(request, "designer")
    context = {"max_bytes": settings.BATON_MAX_UPLOAD_BYTES, "problems": [], "error": ""}
    if request.method == "GET":
        return render(request, "approvals/ops/upload.html", context)
    limit = settings.BATON_MAX_UPLOAD_BYTES
    # Read at most one byte over the limit: the service refuses the file by its size with its own message.
    files = [(f.name, f.read(limit + 1)) for f in request.FILES.getlist("file")]
    if not files:
        context["error"] = ("Choose at least one file: a .bpmn diagram, with its form files "
                            "(*-schema.json, *-uischema.json).")
        return render(request, "approvals/ops/upload.html", context, status=422)
    try:
        created = bpmn_upload(files=files, uploaded_by=request.user)
    except ValidationError as exc:
        context["problems"] = ops.upload_problem_rows(exc.details, files)
        context["error"] = exc.message
        return render(request, "approvals/ops/upload.html", context, status=422)
    if not created:
        context["error"] = "The upload holds no executable process."
        return render(request, "approvals/ops/upload.html", context, status=422)
    first = created[0]
    names = ", ".join(f"{d.process_key} version {d.version}" for d in created)
    messages.success(request, f"Published {names}.")
    return redirect("definition_detail", pk=first.pk)


@login_required
@require_GET
def instances(request):
    params = {k: request.GET.get(k, "").strip() for k in ("status", "process", "q")}
    errors, status = {}, 200
    try:
        rows = ops.instances_filtered(user=request.user, status=params["status"], process_key=params["process"],
                                      q=params["q"])
    except ValidationError as exc:
        errors, status, rows = _errors(exc), 422, ProcessInstance.objects.none()
    return render(request, "approvals/ops/instances.html", {
        "page": _page(request, rows), "params": params, "errors": errors, "statuses": InstanceStatus.choices,
        "process_keys": ops.process_keys(user=request.user)}, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def instance_action(request, pk, action):
    _gate(request, "operator")
    pk = int(pk)
    try:
        instance = instance_get_for(user=request.user, instance_id=pk)
    except NotFound:
        raise Http404("instance not found") from None
    context = {"instance": instance, "action": action, "reason": "", "errors": {}}
    if request.method == "GET":
        return render(request, "approvals/ops/instance_action.html", context)
    context["reason"] = reason = request.POST.get("reason", "").strip()
    if action != "resume" and not reason:
        context["errors"] = {"reason": f"Give a reason to {action} this instance."}
        return render(request, "approvals/ops/instance_action.html", context, status=422)
    try:
        if action == "resume":
            engine.instance_resume(instance_id=instance.pk, actor=request.user)
        else:
            getattr(engine, f"instance_{action}")(instance_id=instance.pk, actor=request.user, reason=reason)
    except NotFound:
        raise Http404("instance not found") from None
    except BatonError as exc:
        messages.error(request, f"Could not {action} instance {instance.pk}: {exc.message}")
        return redirect("instance", pk=instance.pk)
    done = {"cancel": "cancelled", "suspend": "suspended", "resume": "resumed"}[action]
    messages.success(request, f"Instance {instance.pk} {done}.")
    return redirect("instance", pk=instance.pk)


def _incidents_page(request, *, form_errors=None, status=200):
    params = {"status": request.GET.get("status", "open").strip() or "open", "process": request.GET.get("process", "")}
    errors = {}
    try:
        rows = ops.incidents_filtered(status=params["status"], process_key=params["process"].strip())
    except ValidationError as exc:
        errors, status, rows = _errors(exc), 422, ops.incidents_filtered(status="open").none()
    page = _page(request, rows)
    page.object_list = list(page.object_list)
    for incident in page.object_list:
        incident.form_error = (form_errors or {}).get(incident.pk)
    return render(request, "approvals/ops/incidents.html", {
        "page": page, "params": params, "errors": errors, "filters": ops.INCIDENT_FILTERS,
        "process_keys": ops.process_keys(), "next_url": _next_url(request)}, status=status)


def _next_url(request) -> str:
    """Where to go back after an incident action: the page's own URL (GET) or the posted ``next`` if safe."""
    if request.method == "GET":
        return request.get_full_path()
    target = request.POST.get("next", "")
    safe = url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure())
    return target if safe and target else reverse("incidents")


@login_required
@require_GET
def incidents(request):
    _gate(request, "operator")
    return _incidents_page(request)


@login_required
@require_POST
def incident_action(request, pk, action):
    _gate(request, "operator")
    pk = int(pk)
    raw = request.POST.get("data", "")
    try:
        data = ops.parse_json_object(raw)
    except ValidationError as exc:
        errors = {pk: {"message": exc.details[0]["message"], "raw": raw, "action": action}}
        return _incidents_page(request, form_errors=errors, status=422)
    try:
        instance = getattr(engine, f"incident_{action}")(incident_id=pk, actor=request.user, data=data)
    except NotFound:
        raise Http404("incident not found") from None
    except BatonError as exc:
        messages.error(request, f"Could not {action} incident {pk}: {exc.message}")
    else:
        verb = "retried" if action == "retry" else "skipped"
        messages.success(request, f"Incident {pk} {verb}; instance {instance.pk} is now "
                                  f"{instance.get_status_display()}.")
    return redirect(_next_url(request))


@login_required
@require_GET
def audit(request):
    _gate(request, "auditor")
    params = {k: request.GET.get(k, "").strip() for k in ("instance", "actor", "command", "from", "to")}
    errors, status = {}, 200
    try:
        rows = ops.audit_events_filtered(params=params)
    except ValidationError as exc:
        errors, status, rows = _errors(exc), 422, AuditEvent.objects.none()
    page = _page(request, rows)
    return render(request, "approvals/ops/audit.html", {
        "page": page, "rows": ops.audit_rows(page.object_list), "params": params, "errors": errors,
        "commands": ops.audit_commands()}, status=status)


@login_required
@require_POST
def audit_verify(request):
    _gate(request, "auditor")
    report = audit_verify_report()
    return render(request, "approvals/ops/audit_verify.html", {"report": report, "ok": not report.breaks})


@login_required
@require_GET
def audit_instance(request, pk):
    _gate(request, "auditor")
    try:
        instance, chain, events = ops.audit_chain_events(instance_id=pk)
    except NotFound:
        raise Http404("instance not found") from None
    report = audit_verify_report(chain=chain)
    page = _page(request, events)
    return render(request, "approvals/ops/audit_instance.html", {
        "instance": instance, "pk": pk, "chain": chain, "page": page, "rows": ops.audit_rows(page.object_list),
        "report": report, "ok": not report.breaks})
