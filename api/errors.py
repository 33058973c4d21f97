"""Map every API error to one body shape: ``{"code", "message", "details"}``.

``core.errors.BatonError`` carries its own code and status; DRF's and Django's
exceptions are mapped to the same shape (DRF validation errors become 422
``validation_error`` with the field errors in ``details``, like the services'
own ``ValidationError``). Unexpected exceptions are logged and answered with
500 ``internal_error`` so no traceback reaches a client.
"""
from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, JsonResponse
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, serializers
from rest_framework.response import Response

from core.errors import BatonError

log = logging.getLogger(__name__)


class ErrorSerializer(serializers.Serializer):
    """The one error body of the API."""

    code = serializers.CharField(help_text="Stable machine-readable code, e.g. task_not_open.")
    message = serializers.CharField()
    details = serializers.JSONField(allow_null=True, help_text="Structured context, e.g. diagram problems.")


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"code": code, "message": message, "details": details}


def _drf_error(exc: exceptions.APIException) -> tuple[int, dict[str, Any]]:
    if isinstance(exc, exceptions.ValidationError):
        return 422, error_body("validation_error", "the request is invalid", exc.detail)
    codes = exc.get_codes()
    code = codes if isinstance(codes, str) else exc.default_code
    detail = exc.detail
    message = str(detail) if isinstance(detail, str) else str(exc.default_detail)
    return exc.status_code, error_body(str(code), message, None if isinstance(detail, str) else detail)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """Render ``exc`` as the API error body (the DRF ``EXCEPTION_HANDLER``)."""
    headers: dict[str, str] = {}
    if isinstance(exc, BatonError):
        status, body = exc.status, exc.as_dict()
    elif isinstance(exc, Http404):
        status, body = 404, error_body("not_found", "not found")
    elif isinstance(exc, DjangoPermissionDenied):
        status, body = 403, error_body("permission_denied", "you may not do this")
    elif isinstance(exc, exceptions.APIException):
        status, body = _drf_error(exc)
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))
    else:
        log.exception("unhandled API error")
        status, body = 500, error_body("internal_error", "internal error; it has been logged")
    return Response(body, status=status, headers=headers)


def errors(*statuses: int) -> dict[int, OpenApiResponse]:
    """Document the error responses of an endpoint (every one has the error body)."""
    text = {
        400: "Malformed request.",
        401: "Not authenticated.",
        403: "Authenticated but not allowed (role or CSRF).",
        404: "Not found, or not visible to you.",
        409: "Conflict with the current state (see code); retry if busy_retry_later.",
        422: "Invalid input, or Idempotency-Key reused with a different body.",
    }
    return {s: OpenApiResponse(ErrorSerializer, description=text.get(s, "")) for s in (401, *statuses)}


def not_found(request, unmatched: str = "") -> JsonResponse:
    """Answer an unknown ``/api/`` URL with the error body instead of Django's HTML page."""
    hint = " (API URLs end with a slash)" if not request.path.endswith("/") else ""
    return JsonResponse(error_body("not_found", f"no API route {request.path}{hint}"), status=404)


def document_common_errors(result: dict, generator, request, public) -> dict:
    """drf-spectacular postprocessing hook: document the errors every endpoint of a kind can answer.

    Any operation may meet a malformed request (400: ``parse_error`` for
    invalid JSON, ``nul_character`` from ``core.middleware`` for a NUL in the
    path, a parameter or the body); one with a body may meet one in a media type it does not
    parse (415 ``unsupported_media_type``); any paginated list may be asked for a
    page that does not exist (404 ``not_found``, "Invalid page."). Documented
    here once instead of on every view.
    """
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for item in result.get("paths", {}).values():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            responses.setdefault("400", {"content": error, "description": "Malformed request: invalid JSON, or a "
                                         "NUL character in the path, a parameter or the body (nul_character)."})
            if "requestBody" in operation:
                responses.setdefault("415", {"content": error,
                                             "description": "Body in a media type the endpoint does not accept."})
            if any(p.get("name") == "page" and p.get("in") == "query" for p in operation.get("parameters", [])):
                responses.setdefault("404", {"content": error, "description": "No such page."})
    return result
