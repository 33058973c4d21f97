"""Publish versioned process definitions from uploaded BPMN, DMN and form files."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import jsonschema
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Max
from lxml import etree

from core.errors import DiagramRejected, NotFound

from . import metadata, parsing, selectors, validation
from .models import DefinitionFile, ProcessDefinition
from .problems import Problem
from .signals import definition_published
from .xmlsafe import BPMN_NS, xml_problem

BPMN_SUFFIXES = (".bpmn", ".bpmn20.xml")
SPIFF_DYNAMIC_OPTIONS = "options_from_task_data_var:"
_NS = {"bpmn": BPMN_NS}


@dataclass
class _File:
    name: str
    data: bytes
    text: str = ""
    root: etree._Element | None = None
    dialect: str = "bpmn"


@dataclass
class _Upload:
    diagrams: list[_File] = field(default_factory=list)
    dmn: list[_File] = field(default_factory=list)
    json: dict[str, _File] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


@dataclass
class _Plan:
    """One executable process about to be published (or found already published)."""

    parsed: parsing.ParsedProcess
    diagram: _File
    elements: dict
    files: list[tuple[str, _File]]
    base_hash: str
    content_hash: str = ""
    callees: list[str] = field(default_factory=list)


def definition_upload(
    *, files: list[tuple[str, bytes]], uploaded_by: AbstractBaseUser | None,
) -> list[ProcessDefinition]:
    """Validate an upload and publish one definition version per executable process.

    ``files`` may mix ``.bpmn``/``.bpmn20.xml`` diagrams, ``.dmn`` tables and
    ``.json`` forms (other JSON, such as spiff-arena's process_model.json, is
    ignored). All or nothing: any problem in any file raises
    ``DiagramRejected`` listing every problem. Same content (diagram, attached
    files and pinned called processes) returns the existing version; call
    activities to processes outside the upload resolve against the latest
    published version, which is pinned in ``calls``.
    """
    upload = _read(files)
    if upload.problems and not upload.diagrams:
        raise _rejected(upload.problems)
    own_ids = {p.get("id") for d in upload.diagrams for p in d.root.iterfind("bpmn:process", _NS)}
    library, pins = _library(upload.diagrams, own_ids)
    result = validation.validate(
        documents=[validation.Document(d.name, d.root, d.dialect) for d in upload.diagrams],
        dmn_documents=[validation.Document(d.name, d.root) for d in upload.dmn],
        library=library,
    )
    problems = upload.problems + result.problems + _form_problems(upload)
    if problems:
        raise _rejected(problems)
    for attempt in range(3):
        try:
            return _publish([_plan(upload, parsed) for parsed in result.parsed], pins, uploaded_by)
        except IntegrityError:  # a concurrent upload took the version number: recount
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _read(files: list[tuple[str, bytes]]) -> _Upload:
    """Sort files by kind and parse the XML ones safely; collect problems, never raise."""
    upload = _Upload()
    seen: set[str] = set()
    for name, data in files:
        data = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        base = PurePosixPath(name.replace("\\", "/")).name
        lower = base.lower()
        if base in seen or len(base) > 255:
            why = f"two uploaded files are named '{base}'" if base in seen else "the file name is over 255 characters"
            upload.problems.append(Problem(message=why, file=name[:255]))
            continue
        seen.add(base)
        if lower.endswith(".json"):
            upload.json[base] = _File(base, data)
            continue
        if not lower.endswith((*BPMN_SUFFIXES, ".dmn")):
            upload.problems.append(Problem(message="not a .bpmn, .bpmn20.xml, .dmn or .json file", file=base))
            continue
        root = xml_problem(data, file=base)
        if isinstance(root, Problem):
            upload.problems.append(root)
            continue
        item = _File(base, data, _xml_text(data, root), root)
        if lower.endswith(".dmn"):
            upload.dmn.append(item)
        else:
            item.dialect = validation.detect_dialect(root)
            validation.normalize(root)
            upload.diagrams.append(item)
    return upload


def _library(diagrams: list[_File], own_ids: set[str]) -> tuple[list[validation.Document], dict]:
    """Load the published diagrams that call activities of the upload need, pinning each version.

    Direct callees resolve to their latest version; what those call resolves
    to the versions they pinned themselves. Returns the documents for the
    parser and ``process_key -> ProcessDefinition`` pins.
    """
    called = sorted({
        activity.get("calledElement") for d in diagrams for activity in d.root.iter(f"{{{BPMN_NS}}}callActivity")
    } - own_ids - {None, ""})
    queue: list[tuple[str, int | None]] = [(key, None) for key in called]
    loaded, pins, library = set(own_ids), {}, []
    while queue:
        key, version = queue.pop(0)
        if key in pins or key in own_ids:
            continue
        try:
            definition = selectors.definition_get(process_key=key, version=version)
        except NotFound:
            continue  # the parser reports the missing process, naming the call activity
        pins[key] = definition
        queue += list(definition.calls.items())
        if key in loaded:
            continue
        root = xml_problem(definition.bpmn_xml.encode("utf-8"), file=definition.source_name or key)
        if isinstance(root, Problem):
            continue
        validation.normalize(root)
        for process in list(root.iterfind("bpmn:process", _NS)):
            if process.get("id") in loaded:
                root.remove(process)
        loaded |= {p.get("id") for p in root.iterfind("bpmn:process", _NS)}
        name = f"{definition.source_name or key} (published {key} v{definition.version})"
        library.append(validation.Document(name, root))
    return library, pins


def _form_problems(upload: _Upload) -> list[Problem]:
    """Report forms the executable processes reference but the upload lacks, invalid forms, overlong keys."""
    problems: list[Problem] = []
    checked: set[str] = set()
    for diagram in upload.diagrams:
        for pid in validation.executable_ids(diagram.root):
            if len(pid) > 255:
                problems.append(Problem(message="the process id is over 255 characters", file=diagram.name,
                                        element_id=pid[:80] + "..."))
            elements = metadata.process_elements(diagram.root, pid)
            for element_id, name, kind in _form_refs(elements):
                form = upload.json.get(PurePosixPath(name).name)
                if form is None:
                    problems.append(Problem(
                        message=f"the form file '{name}' is referenced here but was not uploaded",
                        element_id=element_id, line=elements[element_id]["line"], file=diagram.name,
                    ))
                elif form.name not in checked:
                    checked.add(form.name)
                    problems += _json_problems(form, schema=kind == DefinitionFile.Kind.FORM)
    return problems


def _plan(upload: _Upload, parsed: parsing.ParsedProcess) -> _Plan:
    """Gather what one checked process publishes: metadata, attached DMN and form files, base hash.

    Files referenced by the process or by the processes of the upload it
    calls are attached; the base hash covers the diagram's bytes and those
    files, sorted by name.
    """
    own = {p.get("id"): d for d in upload.diagrams for p in d.root.iterfind("bpmn:process", _NS)}
    diagram = own[parsed.process_id]
    callees = sorted(key for key in parsed.subprocess_specs if key != parsed.process_id)
    decisions = {
        element.get("id"): dmn for dmn in upload.dmn for element in dmn.root.iter()
        if isinstance(element.tag, str) and etree.QName(element).localname == "decision"
    }
    elements = metadata.process_elements(diagram.root, parsed.process_id)
    attached: dict[str, tuple[str, _File]] = {}
    for pid in [parsed.process_id, *[c for c in callees if c in own]]:
        doc = own[pid]
        for ref in metadata.decision_refs(doc.root, pid):
            if ref in decisions:
                attached[decisions[ref].name] = (DefinitionFile.Kind.DMN, decisions[ref])
        pid_elements = elements if pid == parsed.process_id else metadata.process_elements(doc.root, pid)
        for _element_id, name, kind in _form_refs(pid_elements):
            form = upload.json[PurePosixPath(name).name]
            attached.setdefault(form.name, (kind, form))
    digest = hashlib.sha256(diagram.data)
    for name in sorted(attached):
        digest.update(b"\0" + name.encode() + b"\0" + attached[name][1].data)
    return _Plan(parsed, diagram, elements, [attached[n] for n in sorted(attached)], digest.hexdigest(),
                 callees=callees)


def _form_refs(elements: dict) -> list[tuple[str, str, str]]:
    refs = []
    for element_id, name in metadata.form_files(elements):
        form = elements[element_id]["form"] or {}
        kind = DefinitionFile.Kind.UI_SCHEMA if name == form.get("ui_schema") else DefinitionFile.Kind.FORM
        refs.append((element_id, name, kind))
    return refs


def _json_problems(form: _File, *, schema: bool) -> list[Problem]:
    """Check a form file is a JSON object (and a valid JSON Schema when it is the form schema)."""
    if len(form.data) > settings.BATON_MAX_UPLOAD_BYTES:
        return [Problem(message="the form file is larger than the upload limit", file=form.name)]
    try:
        content = json.loads(form.data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return [Problem(message=f"the form file is not valid JSON: {exc}", file=form.name)]
    if not isinstance(content, dict):
        return [Problem(message="the form file must contain a JSON object", file=form.name)]
    if schema:
        meta = jsonschema.validators.validator_for(content)
        for error in meta(meta.META_SCHEMA).iter_errors(content):
            if isinstance(error.instance, str) and error.instance.startswith(SPIFF_DYNAMIC_OPTIONS):
                continue  # spiff-arena's enum options taken from task data: kept as written
            where = "/".join(str(part) for part in error.absolute_path)
            return [Problem(message=f"the form is not a valid JSON Schema{f' at {where}' if where else ''}: "
                                    f"{error.message}", file=form.name)]
    form.text = form.data.decode("utf-8-sig")
    return []


def _publish(plans: list[_Plan], pins: dict, uploaded_by) -> list[ProcessDefinition]:
    """Create the rows in one transaction; reuse rows whose content hash already exists.

    The content hash is the base hash (diagram bytes, then attached files
    sorted by name); a process that calls others hashes that together with
    each callee's base hash (same upload) or pinned version and hash
    (published), so a changed callee makes a new caller version that pins it.
    """
    by_key = {plan.parsed.process_id: plan for plan in plans}
    for plan in plans:
        parts = [plan.base_hash]
        for key in plan.callees:
            if key in by_key:
                parts.append(f"{key}:{by_key[key].base_hash}")
            elif key in pins:
                parts.append(f"{key}:v{pins[key].version}:{pins[key].content_hash}")
        combined = hashlib.sha256("\n".join(parts).encode()).hexdigest()
        plan.content_hash = plan.base_hash if len(parts) == 1 else combined
    with transaction.atomic():
        chosen: dict[str, ProcessDefinition] = {}
        for plan in plans:
            key = plan.parsed.process_id
            existing = ProcessDefinition.objects.filter(process_key=key, content_hash=plan.content_hash).first()
            if existing is None:
                top = ProcessDefinition.objects.filter(process_key=key).aggregate(top=Max("version"))["top"] or 0
                existing = ProcessDefinition(process_key=key, version=top + 1)
            chosen[key] = existing
        created = []
        for plan in plans:
            definition = chosen[plan.parsed.process_id]
            if definition.pk is not None:
                continue
            definition.name = (plan.parsed.name or plan.parsed.process_id)[:255]
            definition.content_hash = plan.content_hash
            definition.bpmn_xml = plan.diagram.text
            definition.source_name = plan.diagram.name[:255]
            definition.dialect = plan.diagram.dialect
            definition.spec_bundle = parsing.spec_bundle_dumps(plan.parsed)
            definition.elements = plan.elements
            definition.calls = {
                key: (chosen[key] if key in chosen else pins[key]).version
                for key in plan.callees if key in chosen or key in pins
            }
            definition.uploaded_by = uploaded_by
            definition.save()
            DefinitionFile.objects.bulk_create([
                DefinitionFile(definition=definition, kind=kind, name=item.name, content=item.text)
                for kind, item in plan.files
            ])
            created.append(definition)
        if created:
            definition_published.send(sender=ProcessDefinition, definitions=created, actor=uploaded_by)
    return [chosen[plan.parsed.process_id] for plan in plans]


def _xml_text(data: bytes, root: etree._Element) -> str:
    """Keep the document's text as uploaded when it is UTF-8; re-serialize other encodings."""
    encoding = (root.getroottree().docinfo.encoding or "UTF-8").lower()
    if encoding in ("utf-8", "utf8", "us-ascii", "ascii"):
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError:
            pass
    return etree.tostring(root, encoding="unicode")


def _rejected(problems: list[Problem]) -> DiagramRejected:
    first = problems[0]
    count = f"{len(problems)} problems" if len(problems) > 1 else "1 problem"
    return DiagramRejected(f"The upload was refused ({count}). First: {first}",
                           details=[p.as_dict() for p in problems])


__all__ = ["definition_upload"]
