"""Extract what Baton needs to know about each element, once per definition version.

Neither stock SpiffWorkflow parser reads Camunda's ``candidateGroups``,
``assignee`` or ``topic``, nor the BPMN ``potentialOwner``; Baton reads them
here, from the XML, for every dialect alike, and stores the result as the
definition's ``elements``: a plain JSON-able dict ``element_id -> info``.
Every info dict has the same keys (see ``_blank``) so readers never guess:

* ``lane`` / ``lane_id``: the innermost lane listing the element;
* ``candidate_groups`` / ``candidate_users`` / ``assignee``: from
  ``camunda:*`` attributes, BPMN ``potentialOwner`` (resourceRef or
  ``user(x)``/``group(x)`` expressions) and extension properties;
* ``form``: ``{"schema", "ui_schema", "form_key", "fields_schema"}`` from
  ``spiffworkflow:properties`` file names, ``camunda:formKey`` or a JSON
  Schema built from ``camunda:formData``;
* ``connector`` / ``parameters`` / ``result_variable``: from
  ``spiffworkflow:serviceTaskOperator`` or ``camunda:type="external"`` topics;
* ``retries`` / ``timeout`` / ``backoff``, ``due_date``, ``priority``;
* ``properties``: every generic extension property, as written.

A candidate/assignee/due-date/priority property whose value starts with ``=``
is an expression over instance data: it stays only in ``properties`` and is
evaluated when the task opens (``approvals.candidates``).
"""
from __future__ import annotations

import re
from typing import Any

from lxml import etree

from .xmlsafe import BPMN_NS

SPIFF_NS = "http://spiffworkflow.org/bpmn/schema/1.0/core"
CAMUNDA_NS = "http://camunda.org/schema/1.0/bpmn"
ZEEBE_NS = "http://camunda.org/schema/zeebe/1.0"
NS = {"bpmn": BPMN_NS, "spiffworkflow": SPIFF_NS, "camunda": CAMUNDA_NS, "zeebe": ZEEBE_NS}

_SKIPPED = {
    "sequenceFlow", "laneSet", "lane", "dataObject", "dataObjectReference", "dataStoreReference", "association",
    "textAnnotation", "ioSpecification", "property", "extensionElements", "documentation", "group", "category",
}
_ALIASES = {  # extension property name (lower case, no _ or -) -> info key
    "candidategroups": "candidate_groups", "candidateusers": "candidate_users", "assignee": "assignee",
    "retries": "retries", "timeout": "timeout", "backoff": "backoff", "backoffbase": "backoff",
    "duedate": "due_date", "priority": "priority",
}
_CAMUNDA_FIELD_TYPES = {"long": {"type": "integer"}, "boolean": {"type": "boolean"},
                        "date": {"type": "string", "format": "date"}}


def process_elements(root: etree._Element, process_id: str) -> dict[str, dict[str, Any]]:
    """Return ``element_id -> info`` for the process ``process_id`` of a parsed diagram.

    Covers the process itself (type "process": name, documentation, starter
    candidates) and every flow element inside it, nested sub-processes
    included. Pure: reads the tree, never the library.
    """
    process = next((p for p in root.iterfind("bpmn:process", NS) if p.get("id") == process_id), None)
    if process is None:
        return {}
    lanes = _lanes(process)
    resources = {r.get("id"): r.get("name") or r.get("id") for r in root.iterfind("bpmn:resource", NS)}
    elements = {process_id: _info(process, lanes, resources)}
    elements[process_id]["candidate_groups"] = _split(process.get(f"{{{CAMUNDA_NS}}}candidateStarterGroups"))
    elements[process_id]["candidate_users"] = _split(process.get(f"{{{CAMUNDA_NS}}}candidateStarterUsers"))
    for element in process.iterdescendants():
        if not isinstance(element.tag, str) or etree.QName(element).namespace != BPMN_NS:
            continue
        tag = etree.QName(element).localname
        if not element.get("id") or tag in _SKIPPED or _container_tag(element) is None:
            continue
        elements[element.get("id")] = _info(element, lanes, resources)
    return elements


def form_files(elements: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """List ``(element_id, file name)`` for every form file the elements reference."""
    found = []
    for element_id, info in elements.items():
        form = info.get("form") or {}
        for key in ("schema", "ui_schema"):
            if form.get(key):
                found.append((element_id, form[key]))
        key = form.get("form_key") or ""
        if key.lower().endswith(".json"):
            found.append((element_id, key.rsplit(":", 1)[-1]))
    return found


def decision_refs(root: etree._Element, process_id: str) -> list[str]:
    """List the DMN decision ids the business rule tasks of a process call."""
    refs = []
    process = next((p for p in root.iterfind("bpmn:process", NS) if p.get("id") == process_id), None)
    for task in process.iter(f"{{{BPMN_NS}}}businessRuleTask") if process is not None else ():
        ref = task.get(f"{{{CAMUNDA_NS}}}decisionRef")
        node = task.find("bpmn:extensionElements/spiffworkflow:calledDecisionId", NS)
        ref = ref or (node.text.strip() if node is not None and node.text else None)
        if ref:
            refs.append(ref)
    return refs


def _container_tag(element: etree._Element) -> str | None:
    parent = element.getparent()
    if parent is None or etree.QName(parent).namespace != BPMN_NS:
        return None
    tag = etree.QName(parent).localname
    return tag if tag in {"process", "subProcess", "transaction", "adHocSubProcess"} else None


def _blank(element: etree._Element) -> dict[str, Any]:
    return {
        "type": etree.QName(element).localname, "name": element.get("name") or "", "line": element.sourceline or 0,
        "lane": None, "lane_id": None, "candidate_groups": [], "candidate_users": [], "assignee": None,
        "form": None, "connector": None, "parameters": {}, "result_variable": None,
        "retries": None, "timeout": None, "backoff": None, "due_date": None, "priority": None,
        "event": None, "documentation": "", "instructions": "", "properties": {},
    }


def _info(element: etree._Element, lanes: dict, resources: dict) -> dict[str, Any]:
    info = _blank(element)
    for holder in (element, *element.iterancestors()):  # a sub-process's children share its lane
        if holder.get("id") in lanes:
            info["lane_id"], info["lane"] = lanes[holder.get("id")]
            break
    info["documentation"] = "\n".join(
        (d.text or "").strip() for d in element.iterfind("bpmn:documentation", NS) if (d.text or "").strip())
    definition = next((c for c in element if isinstance(c.tag, str)
                       and etree.QName(c).localname.endswith("EventDefinition")), None)
    if definition is not None:
        info["event"] = etree.QName(definition).localname.removesuffix("EventDefinition")
    _camunda(element, info)
    _spiff(element, info)
    _owners(element, info, resources)
    _properties(element, info)
    info["candidate_groups"] = list(dict.fromkeys(info["candidate_groups"]))
    info["candidate_users"] = list(dict.fromkeys(info["candidate_users"]))
    return info


def _camunda(element: etree._Element, info: dict[str, Any]) -> None:
    get = lambda name: element.get(f"{{{CAMUNDA_NS}}}{name}")  # noqa: E731
    info["candidate_groups"] += _split(get("candidateGroups"))
    info["candidate_users"] += _split(get("candidateUsers"))
    info["assignee"] = get("assignee") or info["assignee"]
    info["due_date"], info["priority"] = get("dueDate"), get("priority")
    if get("type") == "external" and get("topic"):
        info["connector"] = get("topic")
    if get("formKey") or get("formRef"):
        info["form"] = {"form_key": get("formKey") or get("formRef")}
    fields = element.xpath("bpmn:extensionElements/camunda:formData/camunda:formField", namespaces=NS)
    if fields:
        info["form"] = {**(info["form"] or {}), "fields_schema": _camunda_form_schema(fields)}
    cycle = element.find("bpmn:extensionElements/camunda:failedJobRetryTimeCycle", NS)
    match = re.fullmatch(r"R(\d+)/(\S+)", (cycle.text or "").strip()) if cycle is not None else None
    if match:
        info["retries"], info["backoff"] = int(match.group(1)), match.group(2)
    task = element.find("bpmn:extensionElements/zeebe:taskDefinition", NS)
    if task is not None:
        info["connector"] = task.get("type") or info["connector"]
        info["retries"] = _int(task.get("retries")) if task.get("retries") else info["retries"]
    zeebe_form = element.find("bpmn:extensionElements/zeebe:formDefinition", NS)
    if zeebe_form is not None and (zeebe_form.get("formKey") or zeebe_form.get("formId")):
        info["form"] = {**(info["form"] or {}), "form_key": zeebe_form.get("formKey") or zeebe_form.get("formId")}


def _camunda_form_schema(fields: list[etree._Element]) -> dict[str, Any]:
    """Build a JSON Schema from Camunda's generated-form fields."""
    schema: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
    for field in fields:
        name = field.get("id") or ""
        prop = dict(_CAMUNDA_FIELD_TYPES.get(field.get("type") or "", {"type": "string"}))
        prop["title"] = field.get("label") or name
        values = field.xpath("camunda:value", namespaces=NS)
        if field.get("type") == "enum" and values:
            prop["enum"] = [v.get("id") for v in values]
        if field.get("defaultValue") is not None:
            prop["default"] = field.get("defaultValue")
        schema["properties"][name] = prop
        if field.xpath("camunda:validation/camunda:constraint[@name='required']", namespaces=NS):
            schema["required"].append(name)
    return schema


def _spiff(element: etree._Element, info: dict[str, Any]) -> None:
    operator = element.find("bpmn:extensionElements/spiffworkflow:serviceTaskOperator", NS)
    if operator is not None:
        info["connector"] = operator.get("id")
        info["result_variable"] = operator.get("resultVariable")
        for parameter in operator.xpath(".//spiffworkflow:parameter", namespaces=NS):
            info["parameters"][parameter.get("id", "")] = {
                "value": parameter.get("value"), "type": parameter.get("type")}
        retry = operator.find(".//spiffworkflow:retry", NS)
        if retry is not None:
            info["retries"] = _int(retry.get("retries"))
            info["backoff"] = _int(retry.get("backoff_base"))
    instructions = element.find("bpmn:extensionElements/spiffworkflow:instructionsForEndUser", NS)
    if instructions is not None and instructions.text:
        info["instructions"] = instructions.text


def _owners(element: etree._Element, info: dict[str, Any], resources: dict) -> None:
    """Read BPMN ``potentialOwner``/``humanPerformer``: a resourceRef or user(x)/group(x) expressions."""
    for role in element.iterchildren(f"{{{BPMN_NS}}}potentialOwner", f"{{{BPMN_NS}}}humanPerformer",
                                     f"{{{BPMN_NS}}}performer"):
        ref = role.find("bpmn:resourceRef", NS)
        if ref is not None and ref.text:
            info["candidate_groups"].append(resources.get(ref.text.strip(), ref.text.strip()))
        for expression in role.iterfind("bpmn:resourceAssignmentExpression/bpmn:formalExpression", NS):
            text = (expression.text or "").strip()
            pairs = re.findall(r"\b(user|group)\(\s*([^)]+?)\s*\)", text)
            for kind, name in pairs:
                info["candidate_users" if kind == "user" else "candidate_groups"].append(name)
            if not pairs:
                info["candidate_groups"] += _split(text)


def _properties(element: etree._Element, info: dict[str, Any]) -> None:
    """Collect generic extension properties and apply the ones Baton understands."""
    props: dict[str, str] = {}
    for prop in element.xpath(
        "bpmn:extensionElements/spiffworkflow:properties/spiffworkflow:property"
        "|bpmn:extensionElements/camunda:properties/camunda:property"
        "|bpmn:extensionElements/zeebe:properties/zeebe:property", namespaces=NS,
    ):
        name = prop.get("name") or prop.get("id")
        if name:
            props[name] = prop.get("value") or ""
    for name, value in element.attrib.items():
        if "baton" in (etree.QName(name).namespace or "").lower():
            props[etree.QName(name).localname] = value
    info["properties"] = props
    schema, ui_schema = props.get("formJsonSchemaFilename"), props.get("formUiSchemaFilename")
    if schema or ui_schema:
        info["form"] = {**(info["form"] or {}), "schema": schema or None, "ui_schema": ui_schema or None}
    for name, value in props.items():
        key = _ALIASES.get(re.sub(r"^(baton|camunda):|[_\-]", "", name.lower()))
        if key and value.strip().startswith("="):
            continue  # an expression over instance data: evaluated when the task opens (approvals.candidates)
        if key in ("candidate_groups", "candidate_users"):
            info[key] += _split(value)
        elif key in ("retries", "backoff"):
            info[key] = _int(value) if value.strip().isdigit() else value
        elif key:
            info[key] = value


def _lanes(process: etree._Element) -> dict[str, tuple[str, str]]:
    """Map flow node id -> (lane id, lane name) for the innermost lane listing it."""
    lanes: dict[str, tuple[str, str]] = {}
    for lane in process.iter(f"{{{BPMN_NS}}}lane"):  # document order: parents before children
        for ref in lane.iterfind("bpmn:flowNodeRef", NS):
            if ref.text:
                lanes[ref.text.strip()] = (lane.get("id"), lane.get("name") or lane.get("id"))
    return lanes


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


__all__ = ["decision_refs", "form_files", "process_elements"]
