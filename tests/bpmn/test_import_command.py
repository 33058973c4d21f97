"""``manage.py bpmn_import``: folders, grouping, output and exit codes."""
from __future__ import annotations

import shutil
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from bpmn.management.commands.bpmn_import import Command
from bpmn.models import ProcessDefinition

from .conftest import FIXTURES

pytestmark = pytest.mark.django_db


def _copy(folder, *names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(FIXTURES / name, folder / name)


def _run(*args) -> tuple[str, CommandError | None]:
    out = StringIO()
    try:
        call_command("bpmn_import", *map(str, args), stdout=out, stderr=out)
    except CommandError as exc:
        return out.getvalue(), exc
    return out.getvalue(), None


def test_imports_folders_recursively_with_their_forms(tmp_path):
    _copy(tmp_path / "claims", "spiff_form.bpmn", "review-schema.json", "review-uischema.json")
    _copy(tmp_path / "simple" / "nested", "minimal.bpmn")
    output, error = _run(tmp_path)
    assert error is None, output
    assert "expense_claim v1 (spiff)" in output and "minimal v1 (bpmn)" in output
    output, error = _run(tmp_path / "simple" / "nested" / "minimal.bpmn")
    assert error is None and "minimal v1 (bpmn) unchanged" in output


def test_callee_folders_are_imported_first(tmp_path):
    _copy(tmp_path / "a_loans", "caller.bpmn")
    _copy(tmp_path / "b_credit", "callee.bpmn")
    output, error = _run(tmp_path)
    assert error is None, output
    assert output.index("credit_check v1") < output.index("loan_application v1")
    assert ProcessDefinition.objects.get(process_key="loan_application").calls == {"credit_check": 1}


def test_refusals_list_every_problem_and_exit_non_zero(tmp_path):
    _copy(tmp_path / "good", "minimal.bpmn")
    _copy(tmp_path / "bad", "broken_structure.bpmn")
    output, error = _run(tmp_path)
    assert error is not None and error.returncode == 1
    assert "minimal v1 (bpmn)" in output
    assert "REFUSED" in output
    assert "broken_structure.bpmn:13 [to_nowhere] sequence flow has targetRef 'missing_end'" in output
    assert "broken_structure.bpmn:4 [start] start event has no outgoing" in output
    assert "Traceback" not in output


def test_missing_paths_and_empty_folders_fail(tmp_path):
    output, error = _run(tmp_path / "nope")
    assert error is not None and error.returncode == 1 and "no such file or folder" in output
    output, error = _run(tmp_path)
    assert error is not None and "no .bpmn" in str(error)


@pytest.mark.django_db(transaction=True)
def test_exit_code_from_the_command_line(tmp_path, capsys):
    _copy(tmp_path, "broken_structure.bpmn")
    with pytest.raises(SystemExit) as exit_info:
        Command().run_from_argv(["manage.py", "bpmn_import", str(tmp_path)])
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert "[to_nowhere]" in captured.out


def test_each_uploads_diagrams_separately(tmp_path):
    _copy(tmp_path / "mixed", "minimal.bpmn", "broken_structure.bpmn", "callee.bpmn", "caller.bpmn")
    output, error = _run(tmp_path, "--each")
    assert error is not None and error.returncode == 1
    assert "minimal v1 (bpmn)" in output and "loan_application v1 (bpmn)" in output
    assert output.index("credit_check v1") < output.index("loan_application v1")
    assert f"REFUSED {tmp_path / 'mixed' / 'broken_structure.bpmn'}" in output
    output, error = _run(tmp_path)
    assert error is not None and f"REFUSED {tmp_path / 'mixed'}" in output
