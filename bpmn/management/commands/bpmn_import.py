"""``python manage.py bpmn_import PATH...``: publish diagrams from files or folders.

Files are grouped by folder, so a folder's DMN tables and JSON forms go with
its diagrams in one upload (``--each``: one upload per diagram, still with its
folder's tables and forms); uploads are ordered callees first when their
diagrams call each other. Prints each accepted definition as
``key vN (dialect)`` and each refusal with every problem as
``file:line [element] message``. Exits non-zero if anything was refused and
never prints a traceback.
"""
from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from lxml import etree

from bpmn.problems import Problem
from bpmn.services import BPMN_SUFFIXES, definition_upload
from bpmn.xmlsafe import BPMN_NS as _BPMN_NS
from bpmn.xmlsafe import xml_problem
from core.errors import BatonError, DiagramRejected

_SUFFIXES = (*BPMN_SUFFIXES, ".dmn", ".json")


class Command(BaseCommand):
    help = "Import BPMN diagrams, with the DMN tables and JSON forms of their folders, as process definitions."

    def add_arguments(self, parser) -> None:
        parser.add_argument("paths", nargs="+", help="diagram files or folders (searched recursively)")
        parser.add_argument("--user", default=None, help="username recorded as the uploader")
        parser.add_argument("--each", action="store_true",
                            help="upload every diagram on its own (with its folder's DMN and JSON files) instead of "
                                 "one upload per folder, so one broken diagram does not hold back its neighbours")

    def handle(self, *args, **options) -> None:
        uploader = None
        if options["user"]:
            uploader = get_user_model().objects.filter(username=options["user"]).first()
            if uploader is None:
                raise CommandError(f"no user named '{options['user']}'")
        groups, missing = _groups([Path(p) for p in options["paths"]])
        if options["each"]:
            groups = _one_per_diagram(groups)
        for path in missing:
            self.stderr.write(f"{path}: no such file or folder")
        refused = len(missing)
        started = time.time()
        for key, files in _callees_first(groups):
            refused += not self._import(key, files, uploader, started)
        if refused:
            raise CommandError(f"{refused} import(s) refused", returncode=1)
        if not groups:
            raise CommandError("no .bpmn or .bpmn20.xml file found", returncode=1)

    def _import(self, label: Path, files: list[Path], uploader, started: float) -> bool:
        """Upload one group (a folder, or one diagram with ``--each``); print the outcome; tell if accepted."""
        try:
            definitions = definition_upload(files=[(f.name, f.read_bytes()) for f in files], uploaded_by=uploader)
        except DiagramRejected as exc:
            self.stdout.write(self.style.ERROR(f"REFUSED {label}"))
            for problem in exc.details or []:
                where = ":".join(str(part) for part in (problem["file"], problem["line"]) if part not in ("", 0))
                element = f" [{problem['element_id']}]" if problem["element_id"] else ""
                self.stdout.write(f"  {where or label}{element} {problem['message']}")
            return False
        except (BatonError, OSError) as exc:
            self.stdout.write(self.style.ERROR(f"REFUSED {label}: {exc}"))
            return False
        except Exception as exc:  # noqa: BLE001 - report, never a traceback
            self.stdout.write(self.style.ERROR(f"REFUSED {label}: internal error ({exc.__class__.__name__}: {exc})"))
            return False
        sources = {f.name: f for f in files}
        for definition in definitions:
            unchanged = " unchanged" if definition.uploaded_at.timestamp() < started else ""
            self.stdout.write(self.style.SUCCESS(
                f"{definition.process_key} v{definition.version} ({definition.dialect}){unchanged}"
                f"  <- {sources.get(definition.source_name, label)}"))
        return True


def _groups(paths: list[Path]) -> tuple[dict[Path, list[Path]], list[Path]]:
    """Group candidate files by folder; keep only folders holding at least one diagram."""
    groups: dict[Path, set[Path]] = defaultdict(set)
    missing = []
    for path in paths:
        if path.is_dir():
            for file in path.rglob("*"):
                if file.is_file() and file.name.lower().endswith(_SUFFIXES):
                    groups[file.parent].add(file)
        elif path.is_file():
            groups[path.parent].add(path)
            if path.name.lower().endswith(BPMN_SUFFIXES):  # a diagram brings its folder's tables and forms
                groups[path.parent].update(f for f in path.parent.iterdir()
                                           if f.is_file() and f.name.lower().endswith((".dmn", ".json")))
        else:
            missing.append(path)
    return {folder: sorted(files) for folder, files in sorted(groups.items())
            if any(f.name.lower().endswith(BPMN_SUFFIXES) for f in files)}, missing


def _one_per_diagram(groups: dict[Path, list[Path]]) -> dict[Path, list[Path]]:
    """Split folder groups into one group per diagram, each with its folder's DMN and JSON files."""
    split = {}
    for files in groups.values():
        extras = [f for f in files if not f.name.lower().endswith(BPMN_SUFFIXES)]
        for diagram in (f for f in files if f.name.lower().endswith(BPMN_SUFFIXES)):
            split[diagram] = [diagram, *extras]
    return split


def _callees_first(groups: dict[Path, list[Path]]) -> list[tuple[Path, list[Path]]]:
    """Order folders so that one defining a process comes before folders calling it."""
    defines: dict[str, Path] = {}
    calls: dict[Path, set[str]] = defaultdict(set)
    for folder, files in groups.items():
        for file in files:
            if not file.name.lower().endswith(BPMN_SUFFIXES):
                continue
            try:
                root = xml_problem(file.read_bytes(), file=file.name)
            except OSError:
                continue
            if isinstance(root, Problem):
                continue  # the upload itself reports it
            for element in root.iter(f"{{{_BPMN_NS}}}process", f"{{{_BPMN_NS}}}callActivity"):
                if etree.QName(element).localname == "process" and element.get("id"):
                    defines.setdefault(element.get("id"), folder)
                elif element.get("calledElement"):
                    calls[folder].add(element.get("calledElement"))
    ordered: list[Path] = []
    visiting: set[Path] = set()

    def visit(folder: Path) -> None:
        if folder in ordered or folder in visiting:
            return
        visiting.add(folder)
        for key in sorted(calls[folder]):
            if key in defines and defines[key] != folder:
                visit(defines[key])
        visiting.discard(folder)
        ordered.append(folder)

    for folder in groups:
        visit(folder)
    return [(folder, groups[folder]) for folder in ordered]
