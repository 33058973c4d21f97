"""Check every expression and script of a diagram (and DMN cells) before it can run.

Every site the engine evaluates — conditions, scripts, pre/post scripts,
timers, multi-instance expressions, service-task parameters, and the exact
expression the DMN engine builds from each cell — goes through the sandbox
checker at upload, so a refusal names the element instead of surfacing as an
incident later. JUEL/FEEL and foreign script languages are refused.
"""
from __future__ import annotations

import ast
import re

from lxml import etree

from . import parsing
from .problems import Problem
from .validation import _LANGUAGE, NS, _at, _owner
from .xmlsafe import BPMN_NS

_EXPRESSION_SITES = (
    (".//bpmn:sequenceFlow/bpmn:conditionExpression", "condition"),
    (".//bpmn:multiInstanceLoopCharacteristics/bpmn:loopCardinality", "loop cardinality"),
    (".//bpmn:completionCondition", "completion condition"),
    (".//bpmn:standardLoopCharacteristics/bpmn:loopCondition", "loop condition"),
    (".//bpmn:conditionalEventDefinition/bpmn:condition", "event condition"),
    (".//bpmn:correlationPropertyRetrievalExpression/*", "correlation expression"),
    (".//spiffworkflow:messagePayload", "message payload"),
    (".//spiffworkflow:payloadExpression", "payload expression"),
    (".//spiffworkflow:processVariableCorrelation/spiffworkflow:expression", "correlation expression"),
)
_SCRIPT_SITES = (
    (".//bpmn:scriptTask/bpmn:script", "script"),
    (".//spiffworkflow:preScript", "pre-script"),
    (".//spiffworkflow:postScript", "post-script"),
)
_JUEL = re.compile(r"[$#]\{")
_FEEL = re.compile(
    r"\.\.|\bthen\b|\bsatisfies\b|\binstance\s+of\b|\bbetween\b|\bdate and time\s*\(|(?<![<>=!])=(?!=)|\breturn\b"
)
_FOREIGN_SCRIPTS = {"groovy", "javascript", "js", "ecmascript", "nashorn", "graal.js", "juel", "feel", "ruby",
                    "jruby", "kotlin", "kts", "java"}
_FEEL_NAMES = {"true": "True", "false": "False", "null": "None"}
_TASK_SETTING = re.compile(  # task settings that may be "=expression" (approvals.candidates)
    r"(?i)(?:baton:|camunda:)?(?:candidate[_-]?users|candidate[_-]?groups|assignee|due[_-]?date|priority)")


def expression_problems(root: etree._Element, *, file: str) -> list[Problem]:
    """Check every expression, script, timer and service parameter of a BPMN document."""
    problems: list[Problem] = []
    for path, label in _EXPRESSION_SITES:
        for element in root.xpath(path, namespaces=NS):
            if (element.text or "").strip():
                problems += _site(element, label, element.text, expression_messages(element.text), file)
    for path, label in _SCRIPT_SITES:
        for element in root.xpath(path, namespaces=NS):
            problems += _site(element, label, element.text or "", _script_messages(element, label), file)
    for kind in ("timeDate", "timeDuration", "timeCycle"):
        for element in root.iter(f"{{{BPMN_NS}}}{kind}"):
            problems += _site(element, f"timer {kind}", element.text or "", _timer_messages(kind, element.text), file)
    for timer in root.iter(f"{{{BPMN_NS}}}timerEventDefinition"):
        if all(timer.find(f"bpmn:{kind}", NS) is None for kind in ("timeDate", "timeDuration", "timeCycle")):
            problems += _site(timer, "timer", "", ["the timer has no timeDate, timeDuration or timeCycle"], file)
    for prop in root.xpath(".//spiffworkflow:property[@value]|.//camunda:property[@value]", namespaces=NS):
        name, value = prop.get("name") or "", (prop.get("value") or "").strip()
        if value.startswith("=") and _TASK_SETTING.fullmatch(name):  # evaluated when the task opens
            problems += _site(prop, f"property '{name}'", value, expression_messages(value[1:]), file)
    for parameter in root.xpath(".//spiffworkflow:serviceTaskOperator//spiffworkflow:parameter[@value]",
                                namespaces=NS):
        label = f"service parameter '{parameter.get('id', '')}'"
        problems += _site(parameter, label, parameter.get("value"), expression_messages(parameter.get("value")), file)
    return problems


def expression_messages(text: str) -> list[str]:
    """Return why an expression is refused ([] when allowed), naming foreign languages plainly."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        if _JUEL.search(text):
            return [f"{_LANGUAGE} (this is a JUEL ${{...}} expression)"]
        if _FEEL.search(text):
            return [f"{_LANGUAGE} (this looks like FEEL)"]
        tree = None
    if tree is not None:
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id in _FEEL_NAMES:
                return [f"{_LANGUAGE}: '{node.id}' is not Python, write {_FEEL_NAMES[node.id]}"]
    return _sandbox().check_expression(text)


def _script_messages(element: etree._Element, label: str) -> list[str]:
    text = element.text or ""
    if label == "script":
        language = (element.getparent().get("scriptFormat") or "").strip().lower()
        if language in _FOREIGN_SCRIPTS:
            return [f"script language '{language}' is not supported: Baton runs a Python subset"]
        if not text.strip():
            return ["the script task has no script"]
    if not text.strip():
        return []
    return _sandbox().check_script(text)


def _timer_messages(kind: str, text: str | None) -> list[str]:
    if not (text or "").strip():
        return ["the timer has no value"]
    try:
        literal = ast.literal_eval(text.strip())
    except (SyntaxError, ValueError, RecursionError, MemoryError, TypeError):
        literal = None
    if isinstance(literal, str):
        message = parsing.timer_literal_problem(kind, literal)
        return [message] if message else []
    return expression_messages(text)


def _site(element: etree._Element, label: str, text: str, messages: list[str], file: str) -> list[Problem]:
    """Turn checker messages about one expression site into Problems naming its element."""
    owner = _owner(element)
    shown = " ".join((text or "").split())
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return [_at(element, f"{label} '{shown}': {message}" if shown else f"{label}: {message}", file,
                owner.get("id", "") if owner is not None else "") for message in messages]


def _sandbox():
    """Import the sandbox checker lazily (it is built beside this module)."""
    from bpmn import sandbox

    return sandbox


def dmn_problems(root: etree._Element, *, file: str) -> list[Problem]:
    """Check DMN cells as the DMN engine evaluates them, not as written.

    The engine turns an input cell into ``(input) == (cell)``, or
    ``input + cell`` when the cell starts with an operator (``> 5``), or
    substitutes ``?`` with the input value; output cells are expressions.
    """
    namespace = etree.QName(root).namespace
    problems: list[Problem] = []

    def text_of(element: etree._Element) -> str | None:
        node = element.find(f"{{{namespace}}}text")
        return node.text if node is not None else None

    for table in root.iter(f"{{{namespace}}}decisionTable"):
        inputs = []
        for column in table.iterfind(f"{{{namespace}}}input"):
            expression_node = column.find(f"{{{namespace}}}inputExpression")
            expression = text_of(expression_node) if expression_node is not None else None
            inputs.append((column.get("label") or column.get("id", ""), expression))
            if expression:
                problems += _site(column, "DMN input expression", expression, expression_messages(expression), file)
        for number, rule in enumerate(table.iterfind(f"{{{namespace}}}rule"), start=1):
            for index, entry in enumerate(rule.iterfind(f"{{{namespace}}}inputEntry")):
                cell = text_of(entry)
                if cell is None or cell == "-" or index >= len(inputs):
                    continue
                built = dmn_built_expression(inputs[index][1] or "dmn_input", cell)
                messages = expression_messages(built) if built else (
                    expression_messages(cell) or ["the cell is neither a value nor a comparison"])
                problems += _site(entry, f"DMN rule {number}, input '{inputs[index][0]}'", cell, messages, file)
            for entry in rule.iterfind(f"{{{namespace}}}outputEntry"):
                cell = text_of(entry)
                if cell:
                    problems += _site(entry, f"DMN rule {number}, output", cell, expression_messages(cell), file)
    return problems


def dmn_built_expression(input_expression: str, cell: str) -> str | None:
    """Build the expression SpiffWorkflow's DMNEngine evaluates for one input cell (None: unparseable)."""
    replaced = re.sub(r"(\?)(?=(?:[^'\"]|['\"][^'\"]*['\"])*$)", "dmninputexpr", cell)
    if "dmninputexpr" in replaced:
        return replaced
    for candidate, built in ((cell, f"({input_expression}) == ({cell})"), (f"v {cell}", input_expression + cell)):
        try:
            ast.parse(candidate)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        return built
    return None
