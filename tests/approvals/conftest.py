"""Fixtures for approvals: demo-like users in role groups, real sample diagrams (and variants of them)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission

from processes.models import HumanTaskStatus, ProcessInstance
from tests.processes.conftest import SAMPLES, upload

USERS = {
    "alice": ("Requesters",), "mike": ("Managers", "Approvers"), "fiona": ("Finance",), "lena": ("Legal",),
    "max": ("Managers", "Finance"), "oscar": ("Operators", "operators"), "audrey": ("auditors",),
    "dana": ("designers",), "eve": (), "sue": ("Managers", "Finance", "Legal"),
}


@pytest.fixture
def users(db) -> dict:
    User = get_user_model()
    made = {}
    for name, groups in USERS.items():
        user = User.objects.create_user(name)  # no password: hashing costs ~1 s a user
        user.groups.add(*[Group.objects.get_or_create(name=g)[0] for g in groups])
        made[name] = user
    made["admin"] = User.objects.create_superuser("admin", email=None, password=None)
    return made


def grant_override(user) -> None:
    user.user_permissions.add(Permission.objects.get(codename="override_sod", content_type__app_label="approvals"))


def fresh(user):
    """Re-read a user so permission and group caches are empty."""
    return get_user_model().objects.get(pk=user.pk)


def sample(key: str) -> Path:
    return SAMPLES / key / f"{key}.bpmn"


def upload_sample(key: str):
    return upload(sample(key))[0]


def upload_variant(key: str, tmp_path: Path, *, process_properties: dict[str, str] | None = None,
                   process_attributes: str = ""):
    """Upload a copy of a sample with extension properties (or attributes) added on its bpmn:process."""
    folder = tmp_path / key
    shutil.copytree(SAMPLES / key, folder)
    path = folder / f"{key}.bpmn"
    xml = path.read_text()
    opening = xml[xml.index(f'<bpmn:process id="{key}"'):]
    opening = opening[:opening.index(">") + 1]
    extra = ""
    if process_properties:
        props = "".join(f'<spiffworkflow:property name="{n}" value="{v}" />' for n, v in process_properties.items())
        extra = f"<bpmn:extensionElements><spiffworkflow:properties>{props}</spiffworkflow:properties>" \
                "</bpmn:extensionElements>"
    replaced = opening[:-1] + (f" {process_attributes}" if process_attributes else "") + ">" + extra
    path.write_text(xml.replace(opening, replaced, 1))
    return upload(path)[0]


def open_task(instance: ProcessInstance, element_id: str):
    return instance.human_tasks.get(element_id=element_id, status=HumanTaskStatus.OPEN)
