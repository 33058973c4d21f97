"""Sample processes shipped with Baton, one folder per process key.

Each folder holds ``<key>.bpmn`` (with BPMNDI, lanes named after the groups
that act), the JSON-Schema and UI-schema forms the diagram references, and a
``README.md`` with the story and the data the process expects.
"""
from pathlib import Path

SAMPLES_DIR = Path(__file__).parent

__all__ = ["SAMPLES_DIR"]
