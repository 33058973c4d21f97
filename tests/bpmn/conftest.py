"""Shared helpers for the BPMN upload tests: fixture files and problem lookups."""
from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import DiagramRejected

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bpmn" / "upload"


def fixture_files(*names: str) -> list[tuple[str, bytes]]:
    """Read fixture files as ``(name, bytes)`` pairs, the shape ``definition_upload`` takes."""
    return [(name, (FIXTURES / name).read_bytes()) for name in names]


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def problems_of(exc_info: pytest.ExceptionInfo[DiagramRejected]) -> list[dict]:
    """Return the refusal's problems, checking each has a plain message."""
    details = exc_info.value.details
    assert isinstance(details, list) and details, "a refusal lists its problems"
    for problem in details:
        assert problem["message"].strip(), problem
    return details


def problem_for(problems: list[dict], element_id: str, *fragments: str) -> dict:
    """Find the problem about ``element_id`` whose message has every fragment (case-insensitive)."""
    for problem in problems:
        message = problem["message"].lower()
        if problem["element_id"] == element_id and all(f.lower() in message for f in fragments):
            return problem
    raise AssertionError(f"no problem for {element_id!r} with {fragments!r} in {problems!r}")
