"""Reads and helpers of the designer, operator and auditor pages (no writes here).

Role gates (``require_role``), the definitions overview with instance counts
from aggregate queries, filtered lists of instances, incidents and audit
events (bad filter values raise ``ValidationError`` naming the field), and the
rows of a refused upload with each element's type and name looked up in the
uploaded file.
"""
from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.utils import timezone
from lxml import etree

from bpmn.models import ProcessDefinition
from bpmn.selectors import definition_list
from bpmn.xmlsafe import xml_problem
from core.errors import NotFound, PermissionDenied, ValidationError
from processes.audit import instance_chain
from processes.models import AuditEvent, Incident, IncidentStatus, InstanceStatus, ProcessInstance

from .selectors import instances_for, roles_of, sees_everything

READ_DEFINITIONS = ("designer", "operator", "auditor")
NAV = (("Definitions", "definitions", ("designer", "operator")), ("Instances", "instances", ("operator", "auditor")),
       ("Incidents", "incidents", ("operator",)), ("Audit", "audit", ("auditor",)))
# Which instance statuses each operator action accepts (as processes.services enforces).
ACTIVE = (InstanceStatus.RUNNING, InstanceStatus.WAITING, InstanceStatus.INCIDENT)
INSTANCE_ACTIONS: dict[str, tuple[str, ...]] = {
    "suspend": ACTIVE, "resume": (InstanceStatus.SUSPENDED,), "cancel": (*ACTIVE, InstanceStatus.SUSPENDED),
}
INCIDENT_FILTERS = (("open", "Open"), ("resolved", "Resolved"), ("all", "All"))
PAGE_SIZE = 50


def has_role(user: Any, *roles: str) -> bool:
    """True if the user holds one of ``roles`` (admins hold every role)."""
    return bool(roles_of(user) & {*roles, "admin"})


def require_role(user: Any, *roles: str) -> None:
    """Raise ``PermissionDenied`` unless the user holds one of ``roles`` (or is admin)."""
    if not has_role(user, *roles):
        raise PermissionDenied(f"this page is for {' or '.join(roles)}s")


def nav_links(roles: set[str]) -> list[dict[str, str]]:
    """Links of the role pages the holder of ``roles`` may open, in menu order."""
    return [{"label": label, "url_name": name} for label, name, needed in NAV if roles & {*needed, "admin"}]


def instance_actions(instance: ProcessInstance) -> list[str]:
    """The operator actions valid for the instance's current status."""
    return [action for action, allowed in INSTANCE_ACTIONS.items() if instance.status in allowed]


def status_counts(*, by: str, values: list[Any]) -> dict[Any, dict[str, int]]:
    """Instance counts per status for each ``by`` value (``definition__process_key`` or ``definition_id``)."""
    counts: dict[Any, dict[str, int]] = defaultdict(lambda: {s: 0 for s in InstanceStatus.values})
    rows = ProcessInstance.objects.filter(**{f"{by}__in": values}).values(by, "status").annotate(n=Count("id"))
    for row in rows.order_by():
        counts[row[by]][row["status"]] = row["n"]
    return counts


def definition_summaries() -> list[dict[str, Any]]:
    """Each process key with its latest version, number of versions and instance counts (three queries)."""
    latest = list(definition_list(latest_only=True).select_related("uploaded_by").defer("bpmn_xml", "spec_bundle"))
    keys = [d.process_key for d in latest]
    versions = dict(ProcessDefinition.objects.filter(process_key__in=keys).values_list("process_key")
                    .annotate(n=Count("id")).order_by())
    counts = status_counts(by="definition__process_key", values=keys)
    return [{"definition": d, "versions": versions.get(d.process_key, 0),
             "counts": [counts[d.process_key][s] for s in InstanceStatus.values]} for d in latest]


def definition_get(*, definition_id: int) -> ProcessDefinition:
    """Return one definition version, or ``NotFound``."""
    definition = ProcessDefinition.objects.select_related("uploaded_by").filter(pk=definition_id).first()
    if definition is None:
        raise NotFound(f"definition {definition_id} does not exist")
    return definition


def definition_versions(definition: ProcessDefinition) -> QuerySet[ProcessDefinition]:
    """All versions of the definition's process key, newest first."""
    return (ProcessDefinition.objects.filter(process_key=definition.process_key).select_related("uploaded_by")
            .only("id", "process_key", "version", "uploaded_at", "uploaded_by__username").order_by("-version"))


def _form_label(form: Any) -> str:
    if not isinstance(form, dict):
        return ""
    parts = [str(form[k]) for k in ("schema", "ui_schema", "form_key") if form.get(k)]
    return ", ".join(parts) or ("inline fields" if form.get("fields_schema") else "")


def definition_elements(definition: ProcessDefinition) -> list[dict[str, Any]]:
    """The element metadata of a definition (id, type, name, lane, form), in document order."""
    rows = [{"id": element_id, "type": meta.get("type", ""), "name": meta.get("name") or "",
             "lane": meta.get("lane") or "", "form": _form_label(meta.get("form")), "line": meta.get("line") or 0}
            for element_id, meta in (definition.elements or {}).items() if isinstance(meta, dict)]
    return sorted(rows, key=lambda row: (row["line"], row["id"]))


def _elements_by_file(files: list[tuple[str, bytes]], wanted: set[str]) -> dict[tuple[str, str], list[tuple]]:
    """Map (file, element id) to [(line, type, name)...] for the files problems name, parsing each safely."""
    found: dict[tuple[str, str], list[tuple]] = defaultdict(list)
    for name, data in files:
        if name not in wanted:
            continue
        root = xml_problem(data, file=name)
        if not isinstance(root, etree._Element):
            continue
        for element in root.iter():
            if isinstance(element.tag, str) and element.get("id"):
                found[name, element.get("id")].append(
                    (element.sourceline or 0, etree.QName(element).localname, element.get("name") or ""))
    return found


def _element_at(candidates: list[tuple], line: Any) -> tuple[str, str]:
    """The (type, name) of the element on the problem's line, else of the first with that id."""
    chosen = next((c for c in candidates if c[0] == line), candidates[0] if candidates else None)
    return (chosen[1], chosen[2]) if chosen else ("", "")


def upload_problem_rows(details: Any, files: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    """Rows of the upload error table: every problem with file, element (type, name), line and message."""
    problems = [p for p in (details or []) if isinstance(p, dict)]
    names = {name.replace("\\", "/").rsplit("/", 1)[-1] for name, _ in files}
    wanted = {p.get("file", "") for p in problems if p.get("element_id")} & names
    base_files = [(name.replace("\\", "/").rsplit("/", 1)[-1], data) for name, data in files]
    elements = _elements_by_file(base_files, wanted) if wanted else {}
    rows = []
    for p in problems:
        kind, label = _element_at(elements.get((p.get("file", ""), p.get("element_id", ""))) or [], p.get("line"))
        rows.append({"file": p.get("file", ""), "element_id": p.get("element_id", ""), "element_type": kind,
                     "element_name": label, "line": p.get("line") or "", "message": p.get("message", "")})
    return rows


def _int(raw: str, field: str) -> int | None:
    raw = (raw or "").strip()
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise ValidationError(f"{field} must be a whole number", details=[{"field": field, "message":
                              f"“{raw[:40]}” is not a whole number."}])
    return int(raw)


def _date(raw: str, field: str) -> dt.date | None:
    raw = (raw or "").strip()
    if not raw:
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise ValidationError(f"{field} must be a date", details=[{"field": field, "message":
                              f"“{raw[:40]}” is not a date (use YYYY-MM-DD)."}]) from None


def process_keys(*, user: Any = None) -> list[str]:
    """Process keys for filter choices: every published one, or (``user``) those of the instances they may see."""
    if user is not None and not sees_everything(user):
        return list(instances_for(user=user).order_by("definition__process_key")
                    .values_list("definition__process_key", flat=True).distinct())
    return list(ProcessDefinition.objects.order_by("process_key").values_list("process_key", flat=True).distinct())


def instances_filtered(*, user: Any, status: str = "", process_key: str = "", q: str = "") -> QuerySet[ProcessInstance]:
    """The instances the user may see, filtered, newest first (unknown status: ``ValidationError``)."""
    if status and status not in InstanceStatus.values:
        raise ValidationError("unknown status", details=[{"field": "status", "message":
                              f"must be one of {', '.join(InstanceStatus.values)}"}])
    qs = instances_for(user=user).defer("state", "definition__bpmn_xml", "definition__spec_bundle")
    if status:
        qs = qs.filter(status=status)
    if process_key:
        qs = qs.filter(definition__process_key=process_key)
    if q:
        qs = qs.filter(business_key__icontains=q)
    return qs.order_by("-started_at", "-id")


def incidents_filtered(*, status: str = "open", process_key: str = "") -> QuerySet[Incident]:
    """Incidents, newest first, by status (open, resolved or all) and process key."""
    if status not in dict(INCIDENT_FILTERS):
        raise ValidationError("unknown status", details=[{"field": "status",
                                                          "message": "must be open, resolved or all"}])
    qs = Incident.objects.select_related("instance__definition", "job").defer(
        "instance__state", "instance__definition__bpmn_xml", "instance__definition__spec_bundle")
    if status != "all":
        qs = qs.filter(status=IncidentStatus(status))
    if process_key:
        qs = qs.filter(instance__definition__process_key=process_key)
    return qs.order_by("-id")


def audit_events_filtered(*, params: dict[str, str]) -> QuerySet[AuditEvent]:
    """Audit events, newest first, by instance, actor username, command and date range (``from``/``to``)."""
    errors: list[dict[str, str]] = []
    values: dict[str, Any] = {}
    for field, parse in (("instance", _int), ("from", _date), ("to", _date)):
        try:
            values[field] = parse(params.get(field, ""), field)
        except ValidationError as exc:
            errors += exc.details
    if values.get("from") and values.get("to") and values["from"] > values["to"]:
        errors.append({"field": "to", "message": "The end date is before the start date."})
    if errors:
        raise ValidationError("invalid filter", details=errors)
    qs = AuditEvent.objects.select_related("actor")
    if values["instance"] is not None:
        qs = qs.filter(chain=instance_chain(values["instance"]))
    if actor := params.get("actor", "").strip():
        qs = qs.filter(Q(actor__username=actor) | Q(actor__isnull=True, actor_name=actor))
    if command := params.get("command", "").strip():
        qs = qs.filter(command=command)
    zone = timezone.get_current_timezone()
    if values["from"] and values["from"] > dt.date.min:  # the calendar's ends bound nothing (and would overflow)
        qs = qs.filter(created_at__gte=dt.datetime.combine(values["from"], dt.time.min, tzinfo=zone))
    if values["to"] and values["to"] < dt.date.max:
        end = dt.datetime.combine(values["to"] + dt.timedelta(days=1), dt.time.min, tzinfo=zone)
        qs = qs.filter(created_at__lt=end)
    return qs.order_by("-created_at", "-id")


def audit_chain_events(*, instance_id: int) -> tuple[ProcessInstance | None, str, QuerySet[AuditEvent]]:
    """The instance (None if deleted), chain key and chain events in order; ``NotFound`` if neither exists."""
    chain = instance_chain(instance_id)
    events = AuditEvent.objects.filter(chain=chain).select_related("actor").order_by("seq")
    instance = ProcessInstance.objects.select_related("definition").defer("state").filter(pk=instance_id).first()
    if instance is None and not events.exists():
        raise NotFound(f"process instance {instance_id} does not exist")
    return instance, chain, events


def audit_commands() -> list[str]:
    """The distinct commands recorded, for the filter's choices."""
    return list(AuditEvent.objects.order_by("command").values_list("command", flat=True).distinct())


def audit_rows(events: Any) -> list[dict[str, Any]]:
    """Display rows of audit events: actor name, compact JSON payload, hash prefix."""
    return [{"event": e, "actor": e.actor.get_username() if e.actor else (e.actor_name or "system"),
             "payload": json.dumps(e.payload, separators=(",", ":"), sort_keys=True, default=str),
             "hash": e.hash[:12]} for e in events]


def parse_json_object(raw: str, *, field: str = "data") -> dict[str, Any] | None:
    """Parse an optional JSON object typed by an operator; ``ValidationError`` saying precisely what is wrong."""
    raw = (raw or "").strip()
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ValidationError("invalid JSON", details=[{"field": field, "message":
                              f"Not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."}]) from None
    if not isinstance(value, dict):
        raise ValidationError("not a JSON object", details=[{"field": field, "message":
                              f"Must be a JSON object such as {{\"key\": \"value\"}}, not a {type(value).__name__}."}])
    return value
