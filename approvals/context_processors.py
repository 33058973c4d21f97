"""Template context shared by every page."""
from __future__ import annotations

from typing import Any


def nav(request: Any) -> dict[str, Any]:
    """What the navigation bar needs (filled in by the ops pages)."""
    return {}
