"""Fixtures for engine and service tests: definitions from real .bpmn files."""
from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from bpmn.models import ProcessDefinition

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bpmn"
ENGINE = FIXTURES / "engine"
SAMPLES = Path(__file__).resolve().parents[2] / "processes" / "samples"


def upload(*paths: Path, user=None) -> list[ProcessDefinition]:
    """Upload diagrams (with the JSON/DMN files beside them) through the real pipeline."""
    from bpmn.services import definition_upload

    files: list[tuple[str, bytes]] = []
    for path in paths:
        files.append((path.name, path.read_bytes()))
        for extra in sorted(path.parent.iterdir()):
            if extra.suffix in (".json", ".dmn") and extra.name not in {n for n, _ in files}:
                files.append((extra.name, extra.read_bytes()))
    return definition_upload(files=files, uploaded_by=user)


@pytest.fixture
def deploy(db):
    """Return a function that uploads a diagram and returns its first definition."""

    def _deploy(path: Path) -> ProcessDefinition:
        return upload(path)[0]

    return _deploy


@pytest.fixture
def alice(db):
    return get_user_model().objects.create_user("alice", password="pw-alice-123")


@pytest.fixture
def bob(db):
    return get_user_model().objects.create_user("bob", password="pw-bob-123")
