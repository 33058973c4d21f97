"""Read the sandbox's Django settings lazily, with defaults.

The sandbox must work without Django (worker processes do not import it) and
before settings are configured, so every lookup falls back to
``policy.SETTING_DEFAULTS``. Costs about a microsecond per call once Django
settings are loaded; hot paths read it only when they need it.
"""
from __future__ import annotations

from typing import Any

from .policy import SETTING_DEFAULTS


def setting(name: str) -> Any:
    """Return ``settings.<name>`` if Django is configured and defines it, else the default."""
    default = SETTING_DEFAULTS[name]
    try:
        from django.conf import settings
        value = getattr(settings, name, default)
    except Exception:  # noqa: BLE001 - Django absent or settings not configured
        return default
    return default if value is None else value
