"""Refuse requests carrying NUL characters before any view sees them.

PostgreSQL cannot store U+0000 in text or jsonb (it answers with a
DataError, a 500), and no person types one: a NUL in a query parameter, a
form field or a JSON body is refused as a 400 with the field named, on
SQLite and PostgreSQL alike.
"""
from __future__ import annotations

import re
from typing import Any, Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse

# a JSON escape \u0000 (an even run of backslashes before it would make it literal text instead)
JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def _nul_field(request: HttpRequest) -> str | None:
    """The name of the first parameter or field holding a NUL ("" for a JSON body, "path"), else None."""
    if "\x00" in request.path:
        return "path"
    for name, values in request.GET.lists():
        if "\x00" in name or any("\x00" in v for v in values):
            return name.replace("\x00", "")
    content_type = request.content_type or ""
    if request.method in ("POST", "PUT", "PATCH"):
        if content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            for name, values in request.POST.lists():
                if "\x00" in name or any("\x00" in v for v in values):
                    return name.replace("\x00", "")
        elif content_type.endswith("json") and JSON_NUL.search(request.body):
            return ""
    return None


class RejectNulMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        field = _nul_field(request)
        if field is None:
            return self.get_response(request)
        message = "Text may not contain the NUL character (U+0000)."
        if request.path.startswith("/api/"):
            return JsonResponse({"code": "nul_character", "message": "text may not contain the NUL character (U+0000)",
                                 "details": [{"field": field, "message": message}]}, status=400)
        response = TemplateResponse(request, "400.html", {"message": message, "field": field}, status=400)
        return response.render()
