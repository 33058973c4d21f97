"""Check uploaded BPMN/DMN documents and report every problem, not the first.

The pipeline (``validate``) runs on documents ``bpmn.xmlsafe`` already parsed:

1. ``normalize`` rewrites what designers' tools write into what Baton runs:
   plain ISO-8601 timer values are quoted (``P2D`` becomes ``"P2D"``, a
   string literal) and Camunda's ``camunda:collection`` multi-instance becomes
   standard ``loopDataInputRef``/``inputDataItem``;
2. structural checks (XML schema, duplicate ids, dangling references,
   unreachable start/end events) and features the engine would silently
   ignore (Camunda listeners and mappings, compensation and link events);
3. every expression and script goes through the sandbox checker
    and is refused naming its element;
4. only when the structure is sound, the library parser runs and its problems
   are merged; each executable process must instantiate and serialize.

Each Problem carries the element id, the line and a plain message.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from lxml import etree

from . import parsing
from .problems import Problem
from .xmlsafe import BPMN_NS

SPIFF_NS = "http://spiffworkflow.org/bpmn/schema/1.0/core"
CAMUNDA_NS = "http://camunda.org/schema/1.0/bpmn"
ZEEBE_NS = "http://camunda.org/schema/zeebe/1.0"
NS = {"bpmn": BPMN_NS, "spiffworkflow": SPIFF_NS, "camunda": CAMUNDA_NS}

_CONTAINERS = {"process", "subProcess", "transaction", "adHocSubProcess"}
# Elements that only wrap an expression: a problem inside one is about its owner.
_WRAPPERS = {
    "extensionElements", "conditionExpression", "multiInstanceLoopCharacteristics", "standardLoopCharacteristics",
    "timerEventDefinition", "conditionalEventDefinition", "messageEventDefinition", "signalEventDefinition",
    "errorEventDefinition", "escalationEventDefinition", "compensateEventDefinition", "linkEventDefinition",
    "correlationPropertyRetrievalExpression",
    "formalExpression", "messagePath", "completionCondition", "loopCardinality", "loopCondition", "condition",
    "script", "timeDate", "timeDuration", "timeCycle",
}
_LANGUAGE = "expression language not supported: Baton evaluates a Python subset"
_NEEDS_ID = {"process", "task", "callActivity", "sequenceFlow", "transaction"}
_ISO_TIMER = re.compile(
    r"R\d*/\S+"  # repetition: R3/PT10M, R/2026-01-01T00:00:00Z/P1D
    r"|P[\dTYMWDHS.,]+"  # duration: P2D, PT5M, P1Y2M
    r"|\d{4}-\d{2}-\d{2}[\dT:.,Z+\-]*",  # date or date-time
    re.IGNORECASE,
)


@dataclass
class Document:
    """One parsed upload document: its name, lxml root and detected dialect."""

    name: str
    root: etree._Element
    dialect: str = "bpmn"


@dataclass
class Validated:
    """The outcome of ``validate``: parsed executable processes, or problems."""

    parsed: list[parsing.ParsedProcess] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def _at(element: etree._Element, message: str, file: str, element_id: str | None = None) -> Problem:
    """Build a Problem located at ``element`` (its id unless another is given, and its line)."""
    element_id = element.get("id", "") if element_id is None else element_id
    return Problem(message=message, element_id=element_id or "", line=element.sourceline or 0, file=file)


def detect_dialect(root: etree._Element) -> str:
    """Name the tool dialect of a diagram: "spiff", "camunda" or "bpmn".

    Extension elements and attributes actually used decide; declared but
    unused namespaces (bpmn.io templates declare several) only break a tie.
    """
    used: set[str] = set()
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        used.add(etree.QName(element).namespace or "")
        used.update(etree.QName(name).namespace or "" for name in element.attrib)
    declared = set(root.nsmap.values())
    for pool in (used, declared):
        if SPIFF_NS in pool:
            return "spiff"
        if CAMUNDA_NS in pool or ZEEBE_NS in pool:
            return "camunda"
    return "bpmn"


def normalize(root: etree._Element) -> None:
    """Rewrite tool idioms in place into what Baton's engine runs (see module doc)."""
    for kind in ("timeDate", "timeDuration", "timeCycle"):
        for element in root.iter(f"{{{BPMN_NS}}}{kind}"):
            text = (element.text or "").strip()
            if text and _ISO_TIMER.fullmatch(text):
                element.text = f'"{text}"'
    for loop in root.iter(f"{{{BPMN_NS}}}multiInstanceLoopCharacteristics"):
        collection = loop.get(f"{{{CAMUNDA_NS}}}collection")
        if not collection or "{" in collection or loop.find("bpmn:loopDataInputRef", NS) is not None:
            continue
        if loop.find("bpmn:loopCardinality", NS) is not None:
            continue
        ref = etree.SubElement(loop, f"{{{BPMN_NS}}}loopDataInputRef")
        ref.text = collection
        variable = loop.get(f"{{{CAMUNDA_NS}}}elementVariable")
        if variable:
            item = etree.SubElement(loop, f"{{{BPMN_NS}}}inputDataItem")
            item.set("id", variable)
            item.set("name", variable)


def structure_problems(root: etree._Element, *, file: str) -> list[Problem]:
    """Report duplicate ids, dangling references and unreachable start/end events."""
    problems: list[Problem] = []
    seen: dict[str, etree._Element] = {}
    for element in root.iter():
        if not isinstance(element.tag, str) or etree.QName(element).namespace != BPMN_NS:
            continue
        element_id = element.get("id")
        if not element_id:
            continue
        if element_id in seen:
            problems.append(_at(element, f"the id '{element_id}' is used by more than one element "
                                         f"(first on line {seen[element_id].sourceline}); ids must be unique", file))
        else:
            seen[element_id] = element
    for process in root.iterfind("bpmn:process", NS):
        for element in (process, *(e for c in process.iter(*(f"{{{BPMN_NS}}}{t}" for t in _CONTAINERS)) for e in c)):
            tag = etree.QName(element).localname if isinstance(element.tag, str) else ""
            if not element.get("id") and (tag in _NEEDS_ID or tag.endswith(("Task", "Event", "Gateway", "Process"))):
                problems.append(_at(element, f"the <bpmn:{tag}> element has no id; processes, flow nodes and "
                                             "sequence flows need one", file))
        if process.get("isExecutable", "true") == "false":
            continue
        for container in process.iter(*(f"{{{BPMN_NS}}}{tag}" for tag in _CONTAINERS)):
            problems += _container_problems(container, seen, file)
    return problems


def _container_problems(container: etree._Element, ids: dict, file: str) -> list[Problem]:
    problems = []
    nodes = {child.get("id"): child for child in container if isinstance(child.tag, str) and child.get("id")}
    sources: set[str] = set()
    targets: set[str] = set()
    for flow in container.iterfind("bpmn:sequenceFlow", NS):
        for attribute, seen_set in (("sourceRef", sources), ("targetRef", targets)):
            ref = flow.get(attribute)
            seen_set.add(ref or "")
            if ref and ref in nodes and ref != flow.get("id"):
                continue
            if not ref:
                why = f"has no {attribute}"
            elif ref in ids:
                why = f"has {attribute} '{ref}', which is not an element of the same process or sub-process"
            else:
                why = f"has {attribute} '{ref}', which does not exist"
            problems.append(_at(flow, f"sequence flow {why}", file))
    for boundary in container.iterfind("bpmn:boundaryEvent", NS):
        ref = boundary.get("attachedToRef")
        if not ref or ref not in nodes:
            problems.append(_at(boundary, f"boundary event is attached to '{ref or ''}', which is not an "
                                          "activity of this process", file))
    for node_id, node in nodes.items():
        tag = etree.QName(node).localname
        if tag == "startEvent" and node_id not in sources:
            problems.append(_at(node, "start event has no outgoing sequence flow, so nothing can follow it", file))
        elif tag == "endEvent" and node_id not in targets:
            problems.append(_at(node, "end event has no incoming sequence flow, so it can never be reached", file))
    return problems


def unsupported_problems(root: etree._Element, *, file: str) -> list[Problem]:
    """Refuse what the engine would otherwise silently ignore: Camunda Java hooks, compensation, links."""
    problems = [
        _at(definition, f"{etree.QName(definition).localname.removesuffix('EventDefinition')} events are not "
                        "supported by Baton's engine", file, _owner(definition).get("id", ""))
        for definition in root.iter(f"{{{BPMN_NS}}}compensateEventDefinition", f"{{{BPMN_NS}}}linkEventDefinition")
        if _owner(definition) is not None
    ]
    unsupported = {
        "executionListener": "Camunda execution listeners run Java or scripts inside Camunda; Baton does not "
        "run them. Model the step as a script or service task",
        "taskListener": "Camunda task listeners run Java or scripts inside Camunda; Baton does not run them",
        "inputOutput": "Camunda input/output mappings are not supported: map data with a script task or a "
        "spiffworkflow:preScript/postScript",
    }
    for element in root.iter(*(f"{{{CAMUNDA_NS}}}{name}" for name in unsupported)):
        owner = _owner(element)
        problems.append(_at(element, unsupported[etree.QName(element).localname], file,
                            owner.get("id", "") if owner is not None else ""))
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        for name, value in element.attrib.items():
            if name.startswith(f"{{{CAMUNDA_NS}}}") and ("${" in value or "#{" in value):
                problems.append(_at(element, f"{_LANGUAGE} (camunda:{etree.QName(name).localname} uses a JUEL "
                                             f"expression '{value}')", file))
    for loop in root.iter(f"{{{BPMN_NS}}}multiInstanceLoopCharacteristics"):
        collection = loop.get(f"{{{CAMUNDA_NS}}}collection")
        if collection and loop.find("bpmn:loopCardinality", NS) is not None:
            problems.append(_at(loop, "a multi-instance activity needs either camunda:collection or a loop "
                                      "cardinality, not both", file, loop.getparent().get("id", "")))
    return problems


def _owner(element: etree._Element) -> etree._Element | None:
    """Return the BPMN/DMN element a problem at ``element`` is about (itself, or its nearest real ancestor)."""
    for candidate in (element, *element.iterancestors()):
        qname = etree.QName(candidate)
        if candidate.get("id") and qname.localname not in _WRAPPERS and qname.namespace not in (SPIFF_NS, CAMUNDA_NS):
            return candidate
    return None


def executable_ids(root: etree._Element) -> list[str]:
    """Return the ids of the processes the engine treats as executable.

    Like the library, a process without ``isExecutable`` counts as
    executable; ``isExecutable="false"`` processes are documentation only.
    """
    return [p.get("id", "") for p in root.iterfind("bpmn:process", NS) if p.get("isExecutable", "true") != "false"]


def validate(
    *, documents: list[Document], dmn_documents: list[Document], library: list[Document] = (),
) -> Validated:
    """Check every document of one upload; parse them only if the structure is sound.

    ``library`` holds published diagrams (already normalized) that call
    activities of the upload may resolve against. Never raises for a bad
    diagram: the caller turns the returned problems into one refusal.
    """
    problems: list[Problem] = []
    structural: list[Problem] = []
    if not documents:
        problems.append(Problem(message="the upload contains no BPMN diagram (.bpmn or .bpmn20.xml)"))
    defined: dict[str, str] = {}
    for doc in documents:
        structural += structure_problems(doc.root, file=doc.name)
        structural += _deduplicate(parsing.schema_problems(doc.root, doc.name), structural)
        for process in doc.root.iterfind("bpmn:process", NS):
            pid = process.get("id", "")
            if pid in defined:
                structural.append(_at(process, f"the process id '{pid}' is also defined in {defined[pid]}; "
                                               "process ids must be unique", doc.name))
            defined.setdefault(pid, doc.name)
        problems += unsupported_problems(doc.root, file=doc.name)
        problems += expression_problems(doc.root, file=doc.name)
    for dmn in dmn_documents:
        problems += dmn_problems(dmn.root, file=dmn.name)
    if documents and not any(executable_ids(doc.root) for doc in documents):
        problems.append(Problem(
            message='no executable process: mark a process isExecutable="true"', file=documents[0].name,
        ))
    problems = structural + problems
    if structural or not documents:
        return Validated(problems=problems)
    parsed, library_problems = parsing.parse_processes(
        [(d.name, d.root) for d in documents], [(d.name, d.root) for d in dmn_documents],
        [(d.name, d.root) for d in library],
    )
    problems += _deduplicate(_explain(library_problems, documents), problems)
    for process in parsed:
        problem = parsing.can_instantiate(process)
        if problem is None:
            try:
                parsing.spec_bundle_dumps(process)
            except Exception as exc:  # noqa: BLE001 - serializer failures vary
                problem = Problem(message=f"process '{process.process_id}' cannot be saved: {exc}",
                                  element_id=process.process_id)
        if problem is not None:
            problems.append(problem)
    return Validated(parsed=[] if problems else parsed, problems=problems)


_ELEMENT_REPR = re.compile(r"<Element \{[^}]*\}(\w+) at 0x[0-9a-f]+>")
_MISSING_PROCESS = re.compile(r"The process '([^']*)' was not found")


def _explain(problems: list[Problem], documents: list[Document]) -> list[Problem]:
    """Make the library's problems precise: plain element names, element ids and lines."""
    by_id: dict[tuple[str, str], etree._Element] = {}
    callers: dict[str, tuple[str, etree._Element]] = {}
    for doc in documents:
        for element in doc.root.iter(f"{{{BPMN_NS}}}*"):
            if element.get("id"):
                by_id.setdefault((doc.name, element.get("id")), element)
            if etree.QName(element).localname == "callActivity" and element.get("calledElement"):
                callers.setdefault(element.get("calledElement"), (doc.name, element))
    explained = []
    for problem in problems:
        message = _ELEMENT_REPR.sub(r"<\1>", problem.message)
        element_id, line, file = problem.element_id, problem.line, problem.file
        missing = _MISSING_PROCESS.match(message)
        if missing and missing.group(1) in callers:
            file, caller = callers[missing.group(1)]
            element_id, line = caller.get("id"), caller.sourceline or 0
            hint = message[message.find("Did you mean"):] if "Did you mean" in message else ""
            message = (f"the call activity calls process '{missing.group(1)}', which is neither in this upload nor "
                       f"published. {hint}").strip()
        element = by_id.get((file, element_id))
        if element is not None and not line:
            line = element.sourceline or 0
        explained.append(Problem(message=message, element_id=element_id, line=line, file=file))
    return explained


def _deduplicate(new: list[Problem], existing: list[Problem]) -> list[Problem]:
    """Drop new problems about an element (or line) an earlier check already explained."""
    taken_elements = {(p.file, p.element_id) for p in existing if p.element_id}
    taken_lines = {(p.file, p.line) for p in existing if p.line}
    by_key: dict[tuple, Problem] = {}
    for problem in new:
        if (problem.file, problem.element_id) in taken_elements or (problem.file, problem.line) in taken_lines:
            continue
        by_key.setdefault((problem.file, problem.element_id, problem.line, problem.message), problem)
    return list(by_key.values())


from .expressions import (  # noqa: E402 - the checks live beside; re-exported for callers
    dmn_built_expression,
    dmn_problems,
    expression_messages,
    expression_problems,
)
