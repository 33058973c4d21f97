"""Role permissions of the API, read from ``approvals.selectors.roles_of``.

Roles: approver and requester (every authenticated user), designer, operator,
auditor (Django groups ``designers``, ``operators``, ``auditors``) and admin
(superuser, who holds every role). Object visibility is not decided here but
by the approvals selectors, which answer 404 for what a user may not see.
"""
from __future__ import annotations

from rest_framework.permissions import BasePermission


def has_role(user, role: str) -> bool:
    """Return True if ``user`` holds ``role`` (admins hold all)."""
    from approvals.selectors import roles_of

    if not getattr(user, "is_authenticated", False):
        return False
    roles = roles_of(user)
    return role in roles or "admin" in roles


class _RolePermission(BasePermission):
    role = ""
    message = "this action needs a role you do not have"

    def has_permission(self, request, view) -> bool:
        return has_role(request.user, self.role)


class IsDesigner(_RolePermission):
    role = "designer"
    message = "only designers may do this"


class IsOperator(_RolePermission):
    role = "operator"
    message = "only operators may do this"


class IsAuditor(_RolePermission):
    role = "auditor"
    message = "only auditors may do this"


class DesignerForWrites(BasePermission):
    """Anyone authenticated may read; only designers may POST."""

    message = IsDesigner.message

    def has_permission(self, request, view) -> bool:
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return bool(request.user and request.user.is_authenticated)
        return has_role(request.user, "designer")
