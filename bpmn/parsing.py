"""Turn checked BPMN/DMN documents into SpiffWorkflow specs (the only parser import).

Baton parses every dialect with one parser (SpiffWorkflow's Spiff parser plus
Baton's overrides) so one serializer configuration restores every state:

* a service task is a wait state: ``BatonServiceTask`` returns nothing from
  its run hook, so the library leaves it STARTED and Baton records a Job;
  its connector comes from ``spiffworkflow:serviceTaskOperator`` or from
  Camunda's ``camunda:type="external" camunda:topic``;
* a plain ``bpmn:task`` passes straight through (the library would make it
  wait for a person nobody can reach);
* business rule tasks accept ``spiffworkflow:calledDecisionId`` and
  ``camunda:decisionRef``.
"""
from __future__ import annotations

import copy
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from lxml import etree
from SpiffWorkflow.bpmn.parser.util import full_tag
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.serializer.default.task_spec import BpmnTaskSpecConverter
from SpiffWorkflow.dmn.specs.business_rule_task_mixin import BusinessRuleTaskMixin
from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser
from SpiffWorkflow.spiff.parser.task_spec import BusinessRuleTaskParser, ServiceTaskParser
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG
from SpiffWorkflow.spiff.serializer.task_spec import ServiceTaskConverter, SpiffBpmnTaskConverter
from SpiffWorkflow.spiff.specs.defaults import NoneTask, ServiceTask
from SpiffWorkflow.specs.base import TaskSpec

from .problems import Problem

CAMUNDA_NS = "http://camunda.org/schema/1.0/bpmn"


class BatonServiceTask(ServiceTask):
    """A service task that waits: the Job table, not the library, runs the connector."""

    def _run_hook(self, task):  # noqa: D401 - SpiffWorkflow hook
        return None


class PassThroughTask(NoneTask):
    """A plain ``bpmn:task``: does nothing and completes at once, as BPMN says."""

    def __init__(self, wf_spec, bpmn_id, **kwargs):
        super().__init__(wf_spec, bpmn_id, **kwargs)
        self.manual = False


class BatonServiceTaskParser(ServiceTaskParser):
    """Read the connector from Spiff's operator extension or Camunda's external topic."""

    def create_task(self):
        extensions = self.parse_extensions()
        operator = extensions.get("serviceTaskOperator")
        if operator is None:
            kind = self.node.get(f"{{{CAMUNDA_NS}}}type")
            topic = self.node.get(f"{{{CAMUNDA_NS}}}topic")
            if kind == "external" and topic:
                operator = {"name": topic, "parameters": {}, "resultVariable": None}
            elif any(self.node.get(f"{{{CAMUNDA_NS}}}{a}") for a in ("class", "delegateExpression", "expression")):
                raise ValidationException(
                    "Java delegates and expressions are not supported on service tasks: use "
                    'camunda:type="external" with camunda:topic naming a Baton connector',
                    node=self.node, file_name=self.filename,
                )
            else:
                raise ValidationException(
                    "A service task must name its connector (spiffworkflow:serviceTaskOperator, "
                    'or camunda:type="external" with camunda:topic)',
                    node=self.node, file_name=self.filename,
                )
        return self.spec_class(
            self.spec, self.bpmn_id,
            operation_name=operator["name"],
            operation_params=operator["parameters"],
            result_variable=operator["resultVariable"],
            retries=operator.get("retries"),
            retry_backoff_base=operator.get("retryBackoffBase"),
            prescript=extensions.get("preScript"),
            postscript=extensions.get("postScript"),
            **self.bpmn_attributes,
        )


class BatonBusinessRuleTaskParser(BusinessRuleTaskParser):
    """Accept Camunda's ``camunda:decisionRef`` beside Spiff's ``calledDecisionId``."""

    @staticmethod
    def get_decision_ref(node):
        return BusinessRuleTaskParser.get_decision_ref(node) or node.get(f"{{{CAMUNDA_NS}}}decisionRef")


class BatonParser(SpiffBpmnParser):
    OVERRIDE_PARSER_CLASSES = {
        **SpiffBpmnParser.OVERRIDE_PARSER_CLASSES,
        full_tag("task"): (SpiffBpmnParser.OVERRIDE_PARSER_CLASSES[full_tag("task")][0], PassThroughTask),
        full_tag("serviceTask"): (BatonServiceTaskParser, BatonServiceTask),
        full_tag("businessRuleTask"): (
            BatonBusinessRuleTaskParser,
            SpiffBpmnParser.OVERRIDE_PARSER_CLASSES[full_tag("businessRuleTask")][1],
        ),
    }


SPEC_CONFIG: dict[type, type] = {
    **SPIFF_CONFIG,
    BatonServiceTask: ServiceTaskConverter,
    PassThroughTask: SpiffBpmnTaskConverter,
}
_SPEC_REGISTRY = BpmnWorkflowSerializer.configure(dict(SPEC_CONFIG))


@dataclass
class ParsedProcess:
    """An executable process with the specs of everything it calls."""

    process_id: str
    name: str
    spec: Any
    subprocess_specs: dict[str, Any] = field(default_factory=dict)

    @property
    def called_processes(self) -> set[str]:
        return {name for name in self.subprocess_specs}


def _problem_from_library(exc: Exception, default_file: str) -> Problem:
    """Translate a library exception into a Problem, never re-raising."""
    if isinstance(exc, ValidationException):
        line = exc.line_number if isinstance(exc.line_number, int) else 0
        message = str(exc.args[0]) if exc.args else exc.__class__.__name__
        return Problem(message=message, element_id=exc.id or "", line=line, file=exc.file_name or default_file)
    if isinstance(exc, SpiffWorkflowException):
        return Problem(message=str(exc), file=default_file)
    return Problem(message=f"the diagram could not be parsed ({exc.__class__.__name__}: {exc})", file=default_file)


def parse_processes(
    documents: list[tuple[str, etree._Element]],
    dmn_documents: list[tuple[str, etree._Element]] = (),
    library: list[tuple[str, etree._Element]] = (),
) -> tuple[list[ParsedProcess], list[Problem]]:
    """Parse the executable processes of ``documents`` into specs.

    ``library`` holds already published diagrams so call activities resolve
    across definitions; only processes of ``documents`` are returned. Every
    library exception becomes a Problem: a broken diagram never raises here.
    """
    parser = BatonParser()
    problems: list[Problem] = []
    own_ids: list[str] = []
    for name, root in dmn_documents:
        try:
            parser.add_dmn_xml(root, filename=name)
        except Exception as exc:  # noqa: BLE001 - library errors vary widely
            problems.append(_problem_from_library(exc, name))
    for name, root in [*documents, *library]:
        before = set(parser.process_parsers)
        try:
            parser.add_bpmn_xml(root, filename=name)
        except Exception as exc:  # noqa: BLE001
            problems.append(_problem_from_library(exc, name))
            continue
        if (name, root) in documents:
            own_ids += [pid for pid in parser.process_parsers if pid not in before]
    if problems:
        return [], problems
    parsed: list[ParsedProcess] = []
    for pid in own_ids:
        process_parser = parser.process_parsers[pid]
        if not process_parser.process_executable:
            continue
        try:
            spec = parser.get_spec(pid)
            subprocess_specs = parser.get_subprocess_specs(pid)
        except Exception as exc:  # noqa: BLE001
            problems.append(_problem_from_library(exc, process_parser.filename or ""))
            continue
        parsed.append(ParsedProcess(pid, process_parser.get_name() or pid, spec, subprocess_specs))
    return parsed, problems


def spec_bundle_dumps(parsed: ParsedProcess) -> str:
    """Serialize a process spec and its called specs once, for the definition row."""
    return json.dumps(
        {
            "spec": _SPEC_REGISTRY.convert(parsed.spec),
            "subprocess_specs": {k: _SPEC_REGISTRY.convert(v) for k, v in parsed.subprocess_specs.items()},
        }
    )


def spec_bundle_loads(bundle: str) -> tuple[Any, dict[str, Any]]:
    """Restore ``(spec, subprocess_specs)`` from a definition's bundle."""
    dct = json.loads(bundle)
    spec = _SPEC_REGISTRY.restore(dct["spec"])
    return spec, {k: _SPEC_REGISTRY.restore(v) for k, v in dct["subprocess_specs"].items()}


def iter_task_specs(spec: Any):
    """Yield ``(bpmn_id, task_spec)`` for every BPMN element of a process spec."""
    for task_spec in spec.task_specs.values():
        bpmn_id = getattr(task_spec, "bpmn_id", None)
        if bpmn_id:
            yield bpmn_id, task_spec


def is_business_rule(task_spec: TaskSpec) -> bool:
    return isinstance(task_spec, BusinessRuleTaskMixin)




# --- Upload checks that need the library (additive: used by bpmn.validation) ---

class _NoEvaluation:
    """Refuse to evaluate or execute anything (the environment of ``_NoEvaluationEngine``)."""

    def evaluate(self, *args, **kwargs):
        raise RuntimeError("expressions are not evaluated while checking an upload")

    def execute(self, *args, **kwargs):
        raise RuntimeError("scripts are not run while checking an upload")


class _NoEvaluationEngine:
    """A script engine for dry runs: evaluating anything at all is refused.

    Its ``environment`` refuses too, since the library calls the environment
    directly for process completion conditions and message correlation.
    """

    def __init__(self) -> None:
        from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine

        self._engine = PythonScriptEngine()
        self.environment = _NoEvaluation()

    def validate(self, expression):
        return self._engine.validate(expression)

    def evaluate(self, task, expression, external_context=None):
        raise RuntimeError("expressions are not evaluated while checking an upload")

    def execute(self, task, script, external_context=None):
        raise RuntimeError("scripts are not run while checking an upload")


def can_instantiate(parsed: ParsedProcess) -> Problem | None:
    """Create (never run) a workflow from ``parsed``; return why it fails, if it does.

    A diagram is accepted only if its executable processes can be instantiated.
    The workflow gets an engine that refuses to evaluate anything, so this dry
    run can never execute diagram code.
    """
    from SpiffWorkflow.bpmn import BpmnWorkflow

    try:
        BpmnWorkflow(parsed.spec, parsed.subprocess_specs, script_engine=_NoEvaluationEngine())
    except Exception as exc:  # noqa: BLE001 - any library failure is a refusal reason
        return Problem(
            message=f"process '{parsed.process_id}' cannot be started: {exc.__class__.__name__}: {exc}",
            element_id=parsed.process_id,
        )
    return None


_SCHEMA: Any = None
_SCHEMA_LOCK = threading.Lock()  # one validator, whose error_log is per call: keep calls apart
_BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"


def schema_problems(root: etree._Element, file: str) -> list[Problem]:
    """Validate a BPMN document against the BPMN 2.0 XSD; one Problem per schema error.

    Reports every error libxml2 finds (capped at 50), with the line and, when
    an element with an id sits on that line, its id. Validates a copy when the
    library's preprocessing (bpmn.io correlation expressions) would edit the tree.
    """
    global _SCHEMA
    from SpiffWorkflow.bpmn.parser.BpmnParser import BpmnValidator

    doc = root
    if root.xpath(".//bpmn:correlationPropertyRetrievalExpression/bpmn:formalExpression",
                  namespaces={"bpmn": _BPMN_NS}):
        doc = copy.deepcopy(root)
    with _SCHEMA_LOCK:
        if _SCHEMA is None:
            _SCHEMA = BpmnValidator()
        if doc is not root:
            _SCHEMA.preprocess(doc)
        if _SCHEMA.validator.validate(doc):
            return []
        errors = [(error.message, error.line) for error in list(_SCHEMA.validator.error_log)[:50]]
    ids_by_line: dict[int, str] = {}
    for element in root.iter():
        if isinstance(element.tag, str) and element.get("id") and element.sourceline:
            ids_by_line.setdefault(element.sourceline, element.get("id"))
    problems = []
    for message, line in errors:
        problems.append(Problem(
            message=f"not valid BPMN 2.0 (XML schema): {message.replace(f'{{{_BPMN_NS}}}', 'bpmn:')}",
            element_id=ids_by_line.get(line, ""), line=line or 0, file=file,
        ))
    return problems


def timer_literal_problem(kind: str, value: str) -> str | None:
    """Check a constant timer value the way the library will read it at run time.

    ``kind`` is ``timeDate``, ``timeDuration`` or ``timeCycle``. Returns a plain
    message when the library would fail on the value, else None.
    """
    from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition as Timer

    readers = {
        "timeDate": (Timer.parse_time_or_duration, "an ISO-8601 date-time such as 2026-01-01T09:00:00Z"),
        "timeDuration": (Timer.parse_iso_duration, "an ISO-8601 duration such as P2D or PT5M"),
        "timeCycle": (Timer.parse_iso_recurring_interval, "an ISO-8601 repetition such as R3/PT10M"),
    }
    reader, expected = readers[kind]
    try:
        reader(value)
    except Exception:  # noqa: BLE001 - the library raises bare Exceptions here
        return f"the timer value '{value}' is not {expected}"
    return None

__all__ = [
    "BatonServiceTask", "PassThroughTask", "ParsedProcess", "SPEC_CONFIG",
    "parse_processes", "spec_bundle_dumps", "spec_bundle_loads", "iter_task_specs", "BpmnTaskSpecConverter",
    "can_instantiate", "schema_problems", "timer_literal_problem",
]
