"""What the diagram viewer highlights: element ids that are done, active or failed."""
from __future__ import annotations

from typing import Any


def diagram_marks(instance: Any) -> dict[str, str]:
    """Comma-separated element ids per state, for the ``#diagram`` element's data attributes."""
    acts = list(instance.activities.all())
    return {"active": ",".join(a.element_id for a in acts if a.state == "active"),
            "done": ",".join(a.element_id for a in acts if a.state == "done")}
