"""Define the exceptions the sandbox raises, as the rest of Baton sees them.

Every refusal or failure of user code surfaces as a ``SandboxError`` subclass
so callers can turn it into an upload problem or an incident without knowing
which layer (static check, in-process cap, worker process) caught it.
"""
from __future__ import annotations


class SandboxError(Exception):
    """Report a sandbox failure; ``message`` is plain English, safe to show."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SandboxViolation(SandboxError):
    """Refuse code that the static check does not allow; lists every problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems) or "the code is not allowed")


class SandboxLimitExceeded(SandboxError):
    """Stop code that hit a CPU, memory, wall-clock, size or loop-work cap."""


class ScriptFailed(SandboxError):
    """Carry the user's own exception: its class name, message and traceback.

    ``error_type`` is the original exception class name (``"ZeroDivisionError"``),
    ``message`` its original message, ``traceback_text`` a traceback of the user
    code only (frames of ``<script>`` / ``<expression>`` with their line
    numbers), and ``line`` the line of the innermost user frame (0 if unknown).
    ``original`` is the exception object itself when the code ran in-process
    (``evaluate``) and ``None`` when it ran in a worker process.
    """

    def __init__(self, error_type: str, message: str, traceback_text: str = "",
                 line: int = 0, original: BaseException | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.traceback_text = traceback_text
        self.line = line
        self.original = original

    def __str__(self) -> str:
        return f"{self.error_type}: {self.message}" if self.message else self.error_type


class LimitHit(BaseException):
    """Abort user code from inside a capped helper (internal).

    A ``BaseException`` on purpose: the user-visible exception names
    (``Exception``, ``ValueError`` ...) cannot catch it, so a script's
    ``try/except`` cannot swallow a cap. Converted to ``SandboxLimitExceeded``
    at the sandbox boundary.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
