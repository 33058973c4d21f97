"""``Idempotency-Key`` for state-changing POSTs: replay the stored answer, never run twice.

Same user + same key + same request (method, path and body hash) returns the
stored status and body without running the command again; same key with a
different request is 422 ``idempotency_key_reused``; a key whose first request
is still running is 409 ``idempotency_in_progress``. Without a key the command
simply runs (a repeated completion then meets the service's own 409).

Results stored: every answer below 500 except ``busy_retry_later`` (retryable).
On a 5xx or a retryable conflict the record is removed so the client may retry
with the same key. The record is written outside the command's transaction:
a crash between the two leaves an unfinished record that may be taken over
after ``BATON_IDEMPOTENCY_STALE_SECONDS``.
"""
from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Callable

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder

from core.errors import BatonError, Busy, Conflict, ValidationError

from .errors import exception_handler
from .models import IdempotencyRecord

HEADER = "Idempotency-Key"
PARAMETER = OpenApiParameter(
    HEADER, str, OpenApiParameter.HEADER, required=False,
    description="Any unique string (e.g. a UUID). Repeating the request with the same key replays the "
                "first answer instead of running the command again.",
)


def _file_hash(upload) -> str:
    """SHA-256 of an uploaded file, chunk by chunk (never the whole file in memory), rewound after."""
    digest = hashlib.sha256()
    for chunk in upload.chunks():
        digest.update(chunk)
    upload.seek(0)
    return digest.hexdigest()


def _fingerprint(request: Request) -> str:
    """Hash the method, path and body (multipart: fields and each file's content)."""
    digest = hashlib.sha256(f"{request.method} {request.path}\n".encode())
    if request.content_type.startswith("multipart/"):
        fields = sorted((k, v) for k, values in request.data.lists() for v in values if isinstance(v, str))
        files = sorted((k, f.name, _file_hash(f)) for k, values in request.FILES.lists() for f in values)
        digest.update(json.dumps([fields, files]).encode())
    else:
        digest.update(json.dumps(request.data, sort_keys=True, cls=JSONEncoder).encode())
    return digest.hexdigest()


def _claim(request: Request, key: str, body_hash: str) -> IdempotencyRecord | Response:
    """Create the unfinished record, or return the stored answer / a refusal for this key."""
    method_path = f"{request.method} {request.path}"[:512]
    for _attempt in range(2):
        try:
            with transaction.atomic():
                return IdempotencyRecord.objects.create(
                    user=request.user, key=key, method_path=method_path, body_hash=body_hash
                )
        except IntegrityError:
            record = IdempotencyRecord.objects.filter(user=request.user, key=key).first()
            if record is None:
                continue
        if record.body_hash != body_hash or record.method_path != method_path:
            raise ValidationError(f"Idempotency-Key '{key}' was already used for a different request",
                                  code="idempotency_key_reused")
        if record.status is not None:
            return Response(record.response, status=record.status, headers={"Idempotent-Replayed": "true"})
        stale = timezone.now() - timedelta(seconds=settings.BATON_IDEMPOTENCY_STALE_SECONDS)
        if record.created_at > stale:
            raise Conflict(f"a request with Idempotency-Key '{key}' is still running", code="idempotency_in_progress")
        IdempotencyRecord.objects.filter(pk=record.pk, status__isnull=True).delete()
    raise Conflict(f"a request with Idempotency-Key '{key}' is still running", code="idempotency_in_progress")


def _run(command: Callable[[], Response], request: Request) -> Response:
    try:
        return command()
    except BatonError as exc:
        return exception_handler(exc, {"request": request})


def idempotent(request: Request, command: Callable[[], Response]) -> Response:
    """Run ``command`` (which renders a Response) at most once per Idempotency-Key.

    Without the header the command runs as is. Errors the command raises are
    rendered (and stored) like its successes, so a replay answers the same.
    """
    key = request.headers.get(HEADER, "").strip()
    if not key:
        return command()
    if len(key) > 255:
        raise ValidationError("Idempotency-Key is longer than 255 characters", code="validation_error")
    claimed = _claim(request, key, _fingerprint(request))
    if isinstance(claimed, Response):
        return claimed
    try:
        response = _run(command, request)
    except BaseException:
        claimed.delete()
        raise
    retryable = response.status_code >= 500 or (
        isinstance(response.data, dict) and response.data.get("code") == Busy.code
    )
    if retryable:
        claimed.delete()
        return response
    claimed.status = response.status_code
    claimed.response = json.loads(json.dumps(response.data, cls=JSONEncoder))
    claimed.save(update_fields=["status", "response"])
    return response
