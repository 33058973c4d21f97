"""core.middleware.RejectNulMiddleware: a NUL anywhere in the input is a 400 naming the field, never a 500."""
from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User
from django.test import Client


@pytest.fixture
def client(db) -> Client:
    client = Client()
    client.force_login(User.objects.create_user("nul-tester"))
    return client


def test_query_and_form_values_with_nul_are_a_400_page_naming_the_field(client):
    page = client.get("/", {"q": "EXP\x00"})
    assert page.status_code == 400 and "field “q”" in page.content.decode() and "<h1>Bad request</h1>" in page.content.decode()
    assert client.post("/me/away/", {"reason": "x\x00y"}).status_code == 400


def test_api_json_with_an_escaped_nul_is_a_400_in_the_error_shape(client):
    response = client.post("/api/v1/instances/", data=json.dumps({"process_key": "x", "data": {"a": "b\u0000"}}),
                           content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {"code": "nul_character", "message": "text may not contain the NUL character (U+0000)",
                               "details": [{"field": "", "message": "Text may not contain the NUL character (U+0000)."}]}


def test_a_literal_backslash_u0000_in_json_text_is_not_a_nul(client):
    body = json.dumps({"process_key": "nope", "data": {"note": "type \\u0000 to mean NUL"}})
    assert "\\\\u0000" in body
    assert client.post("/api/v1/instances/", data=body, content_type="application/json").status_code == 404
