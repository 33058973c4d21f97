"""Message subscriptions and correlation (see MessageSubscription)."""
from __future__ import annotations

from typing import Any


def subscriptions_sync(run: Any) -> None:
    """Bring the instance's MessageSubscription rows in line with its waiting catch events."""
    return None
