"""Timer waits inside a workflow: when is the next one due, and fire the due ones."""
from __future__ import annotations

from datetime import datetime

from .serializer import BatonWorkflow


def next_due(workflow: BatonWorkflow) -> datetime | None:
    """Return when the earliest waiting timer of ``workflow`` is due (UTC), or None."""
    return None
