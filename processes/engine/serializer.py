"""Store workflow state as opaque bytes in Baton's envelope.

Why an envelope: SpiffWorkflow 3.2 stores task data as deltas against the
parent and restores tasks in the order found, so the JSON must reach the
library exactly as it wrote it (a ``jsonb`` round trip or ``sort_keys`` lost
task data, measured). The envelope is zlib-compressed JSON text carrying
Baton's format marker, the library serializer version and the definition whose
spec bundle the state runs on; specs are *not* inside the state (2-2.6x smaller,
2.3-2.7x faster to load).

Loading accepts only envelopes Baton itself wrote at the current serializer
version: the library's oldest migration calls ``eval`` on strings from the
JSON, so migrations run only through ``manage.py migrate_states``.
"""
from __future__ import annotations

import json
import zlib
from typing import Any
from uuid import UUID

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.serializer.default.workflow import BpmnWorkflowConverter
from SpiffWorkflow.bpmn.serializer.helpers.encoder import create_encoder
from SpiffWorkflow.bpmn.serializer.workflow import VERSION as LIBRARY_SERIALIZER_VERSION

from bpmn.parsing import SPEC_CONFIG
from core.errors import StateRejected

from .scripting import sandbox_script_engine

ENVELOPE_FORMAT = "baton-state"
ENVELOPE_VERSION = 1
MAX_STATE_BYTES = 256 * 1024 * 1024
SERIALIZER_VERSION = f"{ENVELOPE_VERSION}/{LIBRARY_SERIALIZER_VERSION}"


class BatonWorkflow(BpmnWorkflow):
    """A workflow whose default script engine is the sandbox, also after a load."""

    def __init__(self, spec, subprocess_specs=None, script_engine=None, **kwargs):
        super().__init__(spec, subprocess_specs, script_engine=script_engine or sandbox_script_engine(), **kwargs)


class BatonWorkflowConverter(BpmnWorkflowConverter):
    """Leave specs out of the state; take them from the definition's bundle on load."""

    def to_dict(self, workflow):
        dct = super(BpmnWorkflowConverter, self).to_dict(workflow)
        dct["subprocesses"] = self.mapping_to_dict(workflow.subprocesses)
        dct["bpmn_events"] = self.registry.convert(workflow.bpmn_events)
        return dct

    def from_dict(self, dct):
        spec, subprocess_specs = dct.pop("_specs")
        workflow = self.target_class(spec, subprocess_specs, deserializing=True)
        workflow.tasks = self.mapping_from_dict(dct["tasks"], UUID, workflow=workflow)
        workflow.task_tree = workflow.tasks.get(UUID(dct["root"]))
        self.set_default_attributes(workflow, dct)
        self.subprocesses_from_dict(dct["subprocesses"], workflow)
        workflow.bpmn_events = self.registry.restore(dct.pop("bpmn_events", []))
        return workflow


_CONFIG = {k: v for k, v in SPEC_CONFIG.items() if k is not BpmnWorkflow}
_CONFIG[BatonWorkflow] = BatonWorkflowConverter
REGISTRY = BpmnWorkflowSerializer.configure(_CONFIG)
# Library objects nested in task data or internal data (events, dates) need the registry's encoder.
_ENCODER = create_encoder(REGISTRY, None)


def _parent_first(tasks: dict[str, Any]) -> dict[str, Any]:
    """Order serialized tasks so every parent precedes its children (deltas need the parent)."""
    ordered: dict[str, Any] = {}
    roots = [tid for tid, t in tasks.items() if t.get("parent") is None or t["parent"] not in tasks]
    stack = list(reversed(roots))
    while stack:
        tid = stack.pop()
        if tid in ordered or tid not in tasks:
            continue
        ordered[tid] = tasks[tid]
        stack.extend(reversed(tasks[tid].get("children", [])))
    for tid, task in tasks.items():  # unreachable leftovers keep their place at the end
        ordered.setdefault(tid, task)
    return ordered


def state_dumps(workflow: BatonWorkflow, *, definition_id: int) -> bytes:
    """Serialize ``workflow`` into an envelope (never re-encode it afterwards)."""
    REGISTRY._encoder_mode = True
    try:
        body = REGISTRY.convert(workflow)
    finally:
        REGISTRY._encoder_mode = False
    envelope = {
        "format": ENVELOPE_FORMAT,
        "version": ENVELOPE_VERSION,
        "serializer_version": LIBRARY_SERIALIZER_VERSION,
        "definition": definition_id,
        "workflow": body,
    }
    return zlib.compress(json.dumps(envelope, cls=_ENCODER, separators=(",", ":")).encode(), 1)


def state_loads(state: bytes, *, definition_id: int, specs: tuple[Any, dict[str, Any]]) -> BatonWorkflow:
    """Restore a workflow from an envelope Baton wrote; refuse anything else.

    Refused before any library code runs: foreign or old formats, another
    serializer version, another definition, oversized or absurdly nested JSON.
    """
    try:
        decompressor = zlib.decompressobj()
        raw = decompressor.decompress(bytes(state), MAX_STATE_BYTES)
        if decompressor.unconsumed_tail:
            raise StateRejected("stored state is larger than the state size limit")
        envelope = json.loads(raw)
    except StateRejected:
        raise
    except RecursionError as exc:
        raise StateRejected("stored state is nested too deeply to be Baton's") from exc
    except (zlib.error, ValueError, TypeError) as exc:
        raise StateRejected(f"stored state is not a Baton envelope ({exc.__class__.__name__})") from exc
    if not isinstance(envelope, dict) or envelope.get("format") != ENVELOPE_FORMAT:
        raise StateRejected("stored state is not a Baton envelope")
    if envelope.get("version") != ENVELOPE_VERSION or envelope.get("serializer_version") != LIBRARY_SERIALIZER_VERSION:
        raise StateRejected(
            f"stored state has serializer version {envelope.get('version')}/{envelope.get('serializer_version')}, "
            f"this Baton reads {SERIALIZER_VERSION}: run `python manage.py migrate_states`"
        )
    if envelope.get("definition") != definition_id:
        raise StateRejected("stored state belongs to another definition")
    body = envelope.get("workflow")
    if not isinstance(body, dict) or not isinstance(body.get("tasks"), dict):
        raise StateRejected("stored state has no task tree")
    body["tasks"] = _parent_first(body["tasks"])
    for sub in body.get("subprocesses", {}).values():
        if isinstance(sub, dict) and isinstance(sub.get("tasks"), dict):
            sub["tasks"] = _parent_first(sub["tasks"])
    body["_specs"] = specs
    try:
        return REGISTRY.restore(body)
    except RecursionError as exc:
        raise StateRejected("stored state is nested too deeply to restore") from exc


def new_workflow(specs: tuple[Any, dict[str, Any]]) -> BatonWorkflow:
    """Create a fresh workflow on the sandbox script engine."""
    spec, subprocess_specs = specs
    return BatonWorkflow(spec, subprocess_specs)


def state_migrate(state: bytes, *, definition_id: int, spec_bundle: str) -> bytes | None:
    """Upgrade a Baton envelope written by an older library version; ``None`` if already current.

    Only for ``manage.py migrate_states``: the library's migrations may call
    ``eval``, so they run only on envelopes Baton itself wrote (format marker
    and definition checked), never on state that came from outside.
    """
    from SpiffWorkflow.bpmn.serializer.migration.version_migration import MIGRATIONS

    envelope = json.loads(zlib.decompress(bytes(state)))
    if envelope.get("format") != ENVELOPE_FORMAT or envelope.get("definition") != definition_id:
        raise StateRejected("stored state is not a Baton envelope of this definition")
    version = envelope.get("serializer_version")
    if version == LIBRARY_SERIALIZER_VERSION and envelope.get("version") == ENVELOPE_VERSION:
        return None
    if version not in MIGRATIONS:
        raise StateRejected(f"no migration from serializer version {version}")
    bundle = json.loads(spec_bundle)
    body = envelope["workflow"]
    body["spec"], body["subprocess_specs"] = bundle["spec"], bundle["subprocess_specs"]
    MIGRATIONS[version](body)
    body.pop("spec", None)
    body.pop("subprocess_specs", None)
    envelope.update(version=ENVELOPE_VERSION, serializer_version=LIBRARY_SERIALIZER_VERSION, workflow=body)
    return zlib.compress(json.dumps(envelope, separators=(",", ":")).encode(), 1)
