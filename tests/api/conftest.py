"""Users of every role, token clients and the expense-approval sample for the API tests."""
from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

SAMPLE = Path(__file__).resolve().parents[2] / "processes" / "samples" / "expense_approval"
ROLE_GROUPS = {"requester": [], "designer": ["designers"], "operator": ["operators"], "auditor": ["auditors"],
               "admin": [], "manager": ["Managers"], "finance": ["Finance"], "other": []}


def make_user(name: str, groups: list[str], superuser: bool = False) -> User:
    user = User.objects.create_user(name, is_superuser=superuser, is_staff=superuser)  # no password: fast
    for group in groups:
        user.groups.add(Group.objects.get_or_create(name=group)[0])
    return user


def token_client(user: User | None) -> APIClient:
    """Return an APIClient authenticated by the user's token (anonymous when ``user`` is None)."""
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


@pytest.fixture
def users(db) -> dict[str, User]:
    return {role: make_user(role, groups, superuser=role == "admin") for role, groups in ROLE_GROUPS.items()}


@pytest.fixture
def clients(users) -> dict[str, APIClient]:
    return {"anonymous": token_client(None), **{role: token_client(user) for role, user in users.items()}}


def sample_files() -> list:
    """Open the sample's diagram and JSON forms for a multipart upload (field ``files``)."""
    return [open(path, "rb") for path in sorted(SAMPLE.iterdir()) if path.suffix in (".bpmn", ".json")]


def upload_sample(client: APIClient):
    files = sample_files()
    try:
        return client.post("/api/v1/definitions/", {"files": files}, format="multipart")
    finally:
        for f in files:
            f.close()


@pytest.fixture
def published(clients):
    response = upload_sample(clients["designer"])
    assert response.status_code == 201, response.json()
    return response.json()


def start_expense(client: APIClient, amount: int = 5000, **extra):
    body = {"process_key": "expense_approval", "business_key": f"EXP-{amount}",
            "data": {"employee": "requester", "amount": amount, "category": "travel", "description": "trip"}}
    return client.post("/api/v1/instances/", body, format="json", **extra)
