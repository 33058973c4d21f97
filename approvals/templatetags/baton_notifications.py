"""``{% unread_notifications %}``: the header's unread count (one COUNT query, only for a signed-in user)."""
from __future__ import annotations

from django import template

from approvals.notifications import unread_count

register = template.Library()


@register.simple_tag(takes_context=True)
def unread_notifications(context) -> int:
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return 0
    if not hasattr(request, "_baton_unread"):  # once per request, however often the tag appears
        request._baton_unread = unread_count(user=user)
    return request._baton_unread
