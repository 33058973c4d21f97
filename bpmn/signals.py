"""Signals ``bpmn`` sends so later layers can react without ``bpmn`` importing them.

Dependencies run ``bpmn`` <- ``processes``: the audit trail lives in
``processes``, so ``bpmn`` announces what it did and ``processes`` listens.
"""
from __future__ import annotations

from django.dispatch import Signal

# Sent inside the publishing transaction, once per upload that created new
# versions, with ``sender=ProcessDefinition``, ``definitions`` (the new
# ProcessDefinition rows, in upload order) and ``actor`` (the uploading User
# or None). A receiver that raises rolls the publication back.
definition_published = Signal()

__all__ = ["definition_published"]
