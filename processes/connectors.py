"""Connectors: the Python callables service tasks call, registered by name.

A service task names its connector (``spiffworkflow:serviceTaskOperator id``
or Camunda's ``camunda:topic``); a worker looks it up here and calls it with
the parameters evaluated in the sandbox and the job's idempotency key, so a
re-run after a crash can keep its side effect single. A deployment adds its
own connectors by listing modules in ``BATON_CONNECTOR_MODULES``; each module
registers with ``@connector("name")`` at import.

Secrets never go in diagrams: a parameter value ``{"secret": "NAME"}``
is replaced at call time by ``settings.BATON_SECRETS[NAME]`` (or the
environment variable ``BATON_SECRET_NAME``), and never stored on the job or
in the audit trail.
"""
from __future__ import annotations

import importlib
import json
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from django.conf import settings

from core.errors import NotFound, ValidationError

log = logging.getLogger("baton.connectors")


class Connector(Protocol):
    def __call__(self, params: dict[str, Any], *, idempotency_key: str) -> Any: ...


@dataclass(frozen=True)
class Registered:
    name: str
    func: Connector
    description: str


_REGISTRY: dict[str, Registered] = {}
_LOADED = False


def connector(name: str) -> Callable[[Connector], Connector]:
    """Register ``func`` under ``name`` (a decorator)."""

    def register(func: Connector) -> Connector:
        _REGISTRY[name] = Registered(name, func, (func.__doc__ or "").strip().splitlines()[0] if func.__doc__ else "")
        return func

    return register


def _load_modules() -> None:
    global _LOADED
    if _LOADED:
        return
    for module in getattr(settings, "BATON_CONNECTOR_MODULES", []):
        importlib.import_module(module)
    _LOADED = True


def connector_get(name: str) -> Registered:
    """Return the connector registered as ``name``; NotFound names the known ones."""
    _load_modules()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise NotFound(f"no connector named '{name}' (registered: {known})") from None


def connector_names() -> list[str]:
    _load_modules()
    return sorted(_REGISTRY)


def resolve_secrets(params: dict[str, Any]) -> dict[str, Any]:
    """Replace ``{"secret": NAME}`` values with the configured secret, at call time only."""
    resolved: dict[str, Any] = {}
    secrets = getattr(settings, "BATON_SECRETS", {})
    for key, value in params.items():
        if isinstance(value, dict) and set(value) == {"secret"}:
            name = str(value["secret"])
            secret = secrets.get(name, os.environ.get(f"BATON_SECRET_{name}"))
            if secret is None:
                raise ValidationError(f"parameter '{key}' refers to secret '{name}', which is not configured")
            resolved[key] = secret
        else:
            resolved[key] = value
    return resolved


@connector("baton.echo")
def echo(params: dict[str, Any], *, idempotency_key: str) -> Any:
    """Return the parameters unchanged (for tests and demos)."""
    return dict(params)


@connector("baton.fail")
def fail(params: dict[str, Any], *, idempotency_key: str) -> Any:
    """Raise the error named in ``message`` (for tests and demos)."""
    raise RuntimeError(str(params.get("message", "baton.fail connector was asked to fail")))


def _addresses(value: Any) -> list[str]:
    """Read recipients given as a list or a comma-separated string."""
    if value is None or value == "":
        return []
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


def _header(value: Any) -> str:
    return " ".join(str(value or "").split())  # no line breaks in a header (BadHeaderError)


@connector("email.send")
def email_send(params: dict[str, Any], *, idempotency_key: str) -> Any:
    """Send an e-mail (to, subject, body; optional cc, bcc, from) through Django's configured mail backend.

    ``EMAIL_BACKEND`` decides where it goes (SMTP in production, files under
    ``var/mail`` in the embedded default, ``mail.outbox`` in tests). A backend
    error raises, so the job is retried with backoff. The idempotency key goes
    out as the ``X-Baton-Idempotency-Key`` header so a receiving system can
    drop a duplicate after a crash between sending and recording.
    """
    from django.core.mail import EmailMessage

    to = _addresses(params.get("to"))
    if not to:
        raise ValueError("email.send needs at least one recipient in 'to'")
    message = EmailMessage(
        subject=_header(params.get("subject")), body=str(params.get("body") or ""),
        from_email=_header(params.get("from")) or settings.DEFAULT_FROM_EMAIL, to=to,
        cc=_addresses(params.get("cc")), bcc=_addresses(params.get("bcc")),
        headers={"X-Baton-Idempotency-Key": idempotency_key},
    )
    sent = message.send(fail_silently=False)
    log.info("email.send to %s: %s", ", ".join(to), message.subject, extra={"idempotency_key": idempotency_key})
    return {"sent": sent, "to": to, "subject": message.subject}


@connector("http.request")
def http_request(params: dict[str, Any], *, idempotency_key: str) -> Any:
    """Make an HTTP request (url, method, json, headers, timeout); return status and JSON or text body."""
    url = str(params.get("url", ""))
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"http.request needs an http(s) url, got {url!r}")
    body = params.get("json")
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Idempotency-Key": idempotency_key, **dict(params.get("headers") or {})}
    if data is not None:
        headers.setdefault("Content-Type", "application/json")
    method = str(params.get("method") or ("POST" if data is not None else "GET")).upper()
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    timeout = float(params.get("timeout") or 10)
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - scheme checked above
        raw = response.read(10 * 1024 * 1024)
        text = raw.decode(response.headers.get_content_charset() or "utf-8", errors="replace")
        try:
            payload: Any = json.loads(text) if text else None
        except ValueError:
            payload = text
        return {"status": response.status, "body": payload}
