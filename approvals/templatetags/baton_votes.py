"""``{% vote_tally task user as tally %}``: the tally of an N-of-M vote task for ``_votes.html`` (None otherwise)."""
from __future__ import annotations

from typing import Any

from django import template

from ..voting import task_tally

register = template.Library()


@register.simple_tag
def vote_tally(task: Any, user: Any = None) -> dict | None:
    """Counts, N, M, who voted what and when, who has not voted yet, and the user's own vote."""
    tally = task_tally(task)
    if tally is None:
        return None
    pk = getattr(user, "pk", None)
    mine = next((v for v in tally.votes if pk is not None and pk in (v.voter_id, v.acting_for_id)), None)
    return {"tally": tally, "approvals": tally.approvals, "required": tally.required,
            "eligible": len(tally.eligible), "votes": tally.votes, "waiting_for": tally.waiting_for,
            "counts": sorted(tally.counts.items()), "mine": mine, "decided": task.decision or tally.outcome}
