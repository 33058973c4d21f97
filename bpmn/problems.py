"""A problem found in an uploaded diagram: what, where, and in which file."""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Problem:
    """One refusal reason, precise enough for a designer to fix it.

    ``element_id`` is the BPMN id of the offending element ("" when the problem
    is about the whole document), ``line`` its line in the file (0 if unknown).
    """

    message: str
    element_id: str = ""
    line: int = 0
    file: str = ""

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        where = ":".join(part for part in (self.file, str(self.line) if self.line else "") if part)
        element = f" [{self.element_id}]" if self.element_id else ""
        return f"{where}{element}: {self.message}" if where or element else self.message
