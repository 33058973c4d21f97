"""The one error family of Baton.

Every refusal a user or integrator can see is a ``BatonError`` with a stable
machine-readable ``code``, an HTTP ``status`` and a plain ``message``; ``details``
carries structured context (e.g. the list of problems of a diagram). One handler
maps them for the API and the UI.
"""
from __future__ import annotations

from typing import Any


class BatonError(Exception):
    code = "error"
    status = 400

    def __init__(self, message: str, *, details: Any = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code:
            self.code = code

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


class ValidationError(BatonError):
    code = "validation_error"
    status = 422


class NotFound(BatonError):
    code = "not_found"
    status = 404


class Conflict(BatonError):
    code = "conflict"
    status = 409


class Busy(Conflict):
    """The instance is locked by another command longer than the lock timeout."""

    code = "busy_retry_later"


class PermissionDenied(BatonError):
    code = "permission_denied"
    status = 403


class DiagramRejected(ValidationError):
    """An uploaded diagram was refused; ``details`` lists every problem."""

    code = "diagram_rejected"


class StateRejected(BatonError):
    """Stored workflow state Baton did not write (or cannot read) is refused."""

    code = "state_rejected"
    status = 500
