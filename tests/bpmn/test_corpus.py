"""Every real diagram of the shared corpus is imported or refused with clear problems (never a crash).

Each ``.bpmn``/``.bpmn20.xml`` file is uploaded with the DMN and JSON files
of its folder, plus what it needs from the same corpus folder: the diagrams
defining the processes its call activities call (with their folders' files)
and DMN tables defining decisions it uses (the library's own fixtures keep
them in ``dmn/``). The corpus lives outside the repository; ``BATON_CORPUS_DIR`` points
elsewhere. A missing corpus fails the run: it must not pass by skipping.
"""
from __future__ import annotations

import functools
import os
import re
from collections import Counter
from pathlib import Path

import pytest
from django.db import transaction

from bpmn.services import BPMN_SUFFIXES, definition_upload
from core.errors import DiagramRejected

def _corpus_dir() -> Path:
    """Find the shared corpus: $BATON_CORPUS_DIR, else beside the checkout, else the team's /work/shared.

    CI runs from a fresh clone wherever it likes, so the path is not assumed
    relative to the repository; if none exists the tests below FAIL (never skip).
    """
    if os.environ.get("BATON_CORPUS_DIR"):
        return Path(os.environ["BATON_CORPUS_DIR"])
    candidates = [Path(__file__).resolve().parents[2].parent / "shared" / "corpus", Path("/work/shared/corpus")]
    return next((c for c in candidates if c.is_dir()), candidates[0])


CORPUS = _corpus_dir()
_CALLED = re.compile(rb'calledElement="([^"]+)"')
_PROCESS = re.compile(rb'<(?:\w+:)?process\b[^>]*\bid="([^"]+)"')
_DECISION_REF = re.compile(rb'(?:decisionRef="|calledDecisionId>)\s*([^"<\s]+)')
_DECISION = re.compile(rb'<(?:\w+:)?decision\b[^>]*\bid="([^"]+)"')


def corpus_diagrams() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.name.lower().endswith(BPMN_SUFFIXES))


@functools.lru_cache(maxsize=None)
def _index(top: Path) -> tuple[dict[bytes, list[Path]], dict[bytes, list[Path]]]:
    """Map process ids to the diagrams and decision ids to the DMN files defining them, under ``top``."""
    processes: dict[bytes, list[Path]] = {}
    decisions: dict[bytes, list[Path]] = {}
    for path in sorted(top.rglob("*")):
        if path.is_file() and path.name.lower().endswith(BPMN_SUFFIXES):
            for pid in set(_PROCESS.findall(path.read_bytes())):
                processes.setdefault(pid, []).append(path)
        elif path.is_file() and path.suffix.lower() == ".dmn":
            for did in set(_DECISION.findall(path.read_bytes())):
                decisions.setdefault(did, []).append(path)
    return processes, decisions


def _nearest(candidates: list[Path], near: Path) -> Path:
    """Prefer a file in ``near``'s folder, then below it, then anywhere (in sorted order)."""
    return min(candidates, key=lambda p: (p.parent != near.parent, near.parent not in p.parents, str(p)))


def upload_set(diagram: Path) -> list[tuple[str, bytes]]:
    """Return the diagram with its folder's DMN/JSON files, plus what it needs from the same corpus folder.

    Like spiff-arena, which resolves call activities across all process
    models, the diagrams defining called processes (and their folders' DMN
    and JSON files) come along, nearest first, and so do DMN tables defining
    decisions it uses.
    """
    processes, decisions = _index(CORPUS / diagram.relative_to(CORPUS).parts[0])
    own = set(_PROCESS.findall(diagram.read_bytes()))
    chosen, queue, seen = [diagram], [diagram], {diagram}
    folders = {diagram.parent}
    while queue:
        data = queue.pop().read_bytes()
        for called in _CALLED.findall(data):
            if called in own or called not in processes:
                continue
            callee = _nearest(processes[called], diagram)
            if callee not in seen:
                seen.add(callee)
                own |= set(_PROCESS.findall(callee.read_bytes()))
                chosen.append(callee)
                queue.append(callee)
                folders.add(callee.parent)
    for folder in sorted(folders):
        chosen += sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in (".dmn", ".json"))
    tables = [path for path in chosen if path.suffix.lower() == ".dmn"]
    available = {did for path in tables for did in _DECISION.findall(path.read_bytes())}
    for ref in sorted({ref for path in seen for ref in _DECISION_REF.findall(path.read_bytes())} - available):
        if ref in decisions:
            chosen.append(_nearest(decisions[ref], diagram))
    names: dict[str, Path] = {}
    for path in chosen:
        names.setdefault(path.name, path)
    return [(name, path.read_bytes()) for name, path in names.items()]


def import_one(diagram: Path) -> tuple[str, list[dict]]:
    """Upload one diagram in a rolled-back savepoint, so no import sees another's definitions.

    Returns ("imported", []) or ("refused", problems); anything else raises.
    """
    with transaction.atomic():
        try:
            definition_upload(files=upload_set(diagram), uploaded_by=None)
            outcome: tuple[str, list[dict]] = ("imported", [])
        except DiagramRejected as exc:
            outcome = ("refused", list(exc.details or []))
        transaction.set_rollback(True)
    return outcome


def test_corpus_is_present():
    assert CORPUS.is_dir(), f"the BPMN corpus is missing at {CORPUS} (set BATON_CORPUS_DIR)"
    assert len(corpus_diagrams()) >= 300


@pytest.mark.django_db
@pytest.mark.parametrize("diagram", corpus_diagrams(), ids=lambda p: str(p.relative_to(CORPUS)))
def test_corpus_diagram_is_imported_or_clearly_refused(diagram):
    outcome, problems = import_one(diagram)
    for problem in problems:
        assert problem["message"].strip(), problem
        assert problem["file"] or problem["element_id"] or "upload" in problem["message"], problem


@pytest.mark.django_db
def test_corpus_summary(capsys):
    """Count imported/refused per corpus folder (the figures in docs/bpmn-support.md)."""
    assert corpus_diagrams(), f"the BPMN corpus is missing at {CORPUS}"
    counts: Counter[tuple[str, str]] = Counter()
    for diagram in corpus_diagrams():
        outcome, _ = import_one(diagram)
        counts[diagram.relative_to(CORPUS).parts[0], outcome] += 1
    assert sum(counts.values()) == len(corpus_diagrams())
    with capsys.disabled():
        print("\nBPMN corpus:")
        for folder in sorted({folder for folder, _ in counts}):
            print(f"  {folder}: {counts[folder, 'imported']} imported, {counts[folder, 'refused']} refused")
