"""Checks that report every problem with element id, line and a plain message."""
from __future__ import annotations

import pytest
from bpmn import parsing, validation
from bpmn.validation import Document, dmn_built_expression, validate
from bpmn.xmlsafe import parse_xml

from .conftest import FIXTURES, fixture_text


def _doc(name: str, text: str | None = None) -> Document:
    data = (text if text is not None else fixture_text(name)).encode()
    root = parse_xml(data, file=name)
    document = Document(name, root, validation.detect_dialect(root))
    validation.normalize(root)
    return document


def _check(*names: str, dmn: tuple[str, ...] = (), texts: dict[str, str] | None = None) -> validation.Validated:
    texts = texts or {}
    return validate(
        documents=[_doc(n, texts.get(n)) for n in names],
        dmn_documents=[_doc(n, texts.get(n)) for n in dmn],
    )


def _find(problems, element_id, *fragments):
    for problem in problems:
        if problem.element_id == element_id and all(f.lower() in problem.message.lower() for f in fragments):
            return problem
    raise AssertionError(f"no problem for {element_id!r} {fragments!r}: {problems!r}")


def test_valid_diagrams_parse_and_instantiate():
    result = _check("minimal.bpmn")
    assert result.problems == []
    assert [p.process_id for p in result.parsed] == ["minimal"]
    assert parsing.can_instantiate(result.parsed[0]) is None


def test_every_structural_problem_is_reported_with_id_and_line():
    problems = _check("broken_structure.bpmn").problems
    assert _find(problems, "task", "more than one element").line == 15
    assert _find(problems, "to_nowhere", "targetRef 'missing_end'", "does not exist").line == 13
    assert _find(problems, "from_nowhere", "sourceRef 'ghost'").line == 14
    assert _find(problems, "start", "no outgoing").line == 4
    assert _find(problems, "end", "no incoming").line == 16
    assert all(p.file == "broken_structure.bpmn" for p in problems)


def test_a_flow_into_another_process_is_named():
    text = fixture_text("minimal.bpmn").replace('targetRef="end"', 'targetRef="elsewhere"').replace(
        "</bpmn:definitions>",
        '<bpmn:process id="other" isExecutable="false"><bpmn:endEvent id="elsewhere"/></bpmn:process>'
        "</bpmn:definitions>")
    problems = _check("minimal.bpmn", texts={"minimal.bpmn": text}).problems
    _find(problems, "to_end", "not an element of the same process")


def test_no_executable_process():
    problems = _check("not_executable.bpmn").problems
    assert any('isExecutable="true"' in p.message for p in problems)


def test_unsafe_code_is_refused_at_every_site():
    problems = _check("unsafe_code.bpmn").problems
    for element_id, fragment in [
        ("script_task", "script"), ("user_task", "pre-script"), ("user_task", "post-script"),
        ("multi_task", "loop cardinality"), ("multi_task", "completion condition"), ("to_timer", "condition"),
        ("timer", "timer timeDuration"), ("service", "service parameter 'url'"),
    ]:
        problem = _find(problems, element_id, fragment)
        assert problem.line > 0 and problem.file == "unsafe_code.bpmn"
    assert not [p for p in problems if not p.element_id], problems


def test_unsafe_dmn_cells_are_refused_as_the_engine_builds_them():
    problems = _check("business_rule.bpmn", dmn=("unsafe.dmn",)).problems
    _find(problems, "Entry_import", "rule 1")
    _find(problems, "Entry_operator", "rule 2")
    _find(problems, "Out_2", "output")
    _find(problems, "Entry_feel", "expression language not supported")
    assert {p.file for p in problems if p.element_id.startswith(("Entry", "Out"))} == {"unsafe.dmn"}


def test_safe_dmn_is_accepted():
    result = _check("business_rule.bpmn", dmn=("decision.dmn",))
    assert result.problems == []


@pytest.mark.parametrize(("cell", "built"), [
    ("5000", "(amount) == (5000)"),
    ('"gold"', '(amount) == ("gold")'),
    ("< 1000", "amount< 1000"),
    ("> 5 and amount < 9", "amount> 5 and amount < 9"),
    ("1 < ? < 9", "1 < dmninputexpr < 9"),
    ('"what?"', '(amount) == ("what?")'),
    ("[1..10]", None),
])
def test_dmn_expression_is_built_like_the_engine(cell, built):
    assert dmn_built_expression("amount", cell) == built


def test_foreign_expression_languages_are_refused_by_name():
    problems = _check("foreign_languages.bpmn").problems
    assert "JUEL" in _find(problems, "juel_flow", "expression language not supported").message
    assert "FEEL" in _find(problems, "feel_flow", "expression language not supported").message
    _find(problems, "true_flow", "expression language not supported")
    _find(problems, "approve", "camunda:assignee", "JUEL")
    _find(problems, "script", "script language 'groovy'")


def test_feel_literals_in_python_syntax_are_refused():
    text = fixture_text("camunda_approval.bpmn").replace("approved == True", "approved == true")
    problems = _check("camunda_approval.bpmn", texts={"camunda_approval.bpmn": text}).problems
    assert "write True" in _find(problems, "to_order", "not Python").message


def test_iso_timer_values_are_quoted_before_parsing():
    doc = _doc("camunda_approval.bpmn")
    assert [el.text for el in doc.root.iter("{*}timeDuration")] == ['"P2D"']
    assert [el.text for el in doc.root.iter("{*}timeDate")] == ['"2026-01-01T00:00:00Z"']
    result = validate(documents=[doc], dmn_documents=[])
    spec = result.parsed[0].spec
    assert spec.task_specs["reminder"].event_definition.expression == '"P2D"'


@pytest.mark.parametrize(("kind", "value"), [
    ("timeDuration", "P2D"), ("timeDuration", "PT5M"), ("timeDuration", "P1Y2M3DT4H"), ("timeCycle", "R3/PT10M"),
    ("timeCycle", "R/2026-01-01T00:00:00Z/P1D"), ("timeDate", "2026-01-01T00:00:00Z"), ("timeDate", "2026-03-01"),
])
def test_camunda_modeler_timer_values_are_accepted(kind, value):
    text = fixture_text("camunda_approval.bpmn").replace(
        '<bpmn:timeDuration xsi:type="bpmn:tFormalExpression">P2D</bpmn:timeDuration>',
        f'<bpmn:{kind} xsi:type="bpmn:tFormalExpression">{value}</bpmn:{kind}>')
    result = _check("camunda_approval.bpmn", texts={"camunda_approval.bpmn": text})
    assert result.problems == [], result.problems


def test_invalid_timer_literals_are_refused():
    text = fixture_text("camunda_approval.bpmn").replace(">P2D<", ">P1H<")
    problems = _check("camunda_approval.bpmn", texts={"camunda_approval.bpmn": text}).problems
    _find(problems, "reminder", "'P1H' is not an ISO-8601 duration")


def test_empty_timer_is_refused():
    text = fixture_text("camunda_approval.bpmn").replace(
        '<bpmn:timeDuration xsi:type="bpmn:tFormalExpression">P2D</bpmn:timeDuration>', "")
    problems = _check("camunda_approval.bpmn", texts={"camunda_approval.bpmn": text}).problems
    _find(problems, "reminder", "no timeDate, timeDuration or timeCycle")


def test_camunda_listeners_and_mappings_are_refused():
    text = fixture_text("camunda_approval.bpmn").replace(
        "<camunda:formData>",
        '<camunda:taskListener class="org.example.Notify" event="create" />'
        '<camunda:inputOutput><camunda:inputParameter name="x">1</camunda:inputParameter></camunda:inputOutput>'
        "<camunda:formData>")
    problems = _check("camunda_approval.bpmn", texts={"camunda_approval.bpmn": text}).problems
    _find(problems, "approve", "task listeners")
    _find(problems, "approve", "input/output mappings")


def test_compensation_and_link_events_are_refused():
    text = fixture_text("callee.bpmn").replace(
        '<bpmn:endEvent id="end">', '<bpmn:endEvent id="end"><bpmn:compensateEventDefinition id="Comp_1" />').replace(
        '<bpmn:startEvent id="start">', '<bpmn:intermediateThrowEvent id="link"><bpmn:linkEventDefinition '
        'id="Link_1" name="a" /></bpmn:intermediateThrowEvent><bpmn:startEvent id="start">')
    problems = _check("callee.bpmn", texts={"callee.bpmn": text}).problems
    _find(problems, "end", "compensate events are not supported")
    _find(problems, "link", "link events are not supported")


def test_camunda_collection_multi_instance_becomes_standard():
    text = fixture_text("camunda_approval.bpmn").replace(
        '<bpmn:outgoing>to_decide</bpmn:outgoing>',
        '<bpmn:outgoing>to_decide</bpmn:outgoing>'
        '<bpmn:multiInstanceLoopCharacteristics camunda:collection="approvers" camunda:elementVariable="approver" />',
    )
    result = _check("camunda_approval.bpmn", texts={"camunda_approval.bpmn": text})
    assert result.problems == []
    spec = result.parsed[0].spec
    assert spec.task_specs["approve"].data_input.bpmn_id == "approvers"


def test_library_problems_get_element_and_line():
    text = fixture_text("minimal.bpmn").replace(
        '<bpmn:userTask id="approve" name="Approve">',
        '<bpmn:callActivity id="approve" name="Approve" calledElement="nowhere">').replace(
        "</bpmn:userTask>", "</bpmn:callActivity>")
    problems = _check("minimal.bpmn", texts={"minimal.bpmn": text}).problems
    problem = _find(problems, "approve", "calls process 'nowhere'")
    assert problem.line == 8


def test_duplicate_process_ids_across_files():
    problems = _check("minimal.bpmn", "minimal_copy.bpmn",
                      texts={"minimal_copy.bpmn": fixture_text("minimal.bpmn")}).problems
    _find(problems, "minimal", "also defined in minimal.bpmn")


def test_schema_errors_are_listed():
    text = fixture_text("minimal.bpmn").replace('<bpmn:userTask id="approve"', '<bpmn:userTask id="approve" bogus="1"')
    problems = _check("minimal.bpmn", texts={"minimal.bpmn": text}).problems
    assert "XML schema" in _find(problems, "approve", "bogus").message


@pytest.mark.parametrize(("name", "dialect"), [
    ("minimal.bpmn", "bpmn"), ("camunda_approval.bpmn", "camunda"), ("spiff_form.bpmn", "spiff"),
])
def test_dialect_detection(name, dialect):
    assert _doc(name).dialect == dialect


def test_plain_task_parses_as_pass_through():
    text = fixture_text("minimal.bpmn").replace("userTask", "task")
    result = _check("minimal.bpmn", texts={"minimal.bpmn": text})
    assert result.problems == []
    assert isinstance(result.parsed[0].spec.task_specs["approve"], parsing.PassThroughTask)


def test_fixtures_folder_exists():
    assert (FIXTURES / "minimal.bpmn").exists()
