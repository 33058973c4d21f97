"""Template context shared by every page."""
from __future__ import annotations

from typing import Any

from .ops import nav_links
from .selectors import roles_of


def nav(request: Any) -> dict[str, Any]:
    """The user's roles (read once per request) and the role pages' links for the navigation bar."""
    user = getattr(request, "user", None)
    if user is None or not getattr(user, "is_authenticated", False):
        return {"baton_roles": set(), "nav_links": []}
    roles = getattr(request, "_baton_roles", None)
    if roles is None:
        roles = request._baton_roles = roles_of(user)
    return {"baton_roles": roles, "nav_links": nav_links(roles),
            "is_operator": bool(roles & {"operator", "admin"})}
