"""Verify the audit trail's hash chains and report the first broken link of each.

    python manage.py verify_audit                      # every chain
    python manage.py verify_audit --chain instance:42  # one chain
    python manage.py verify_audit --export-heads heads.jsonl   # also save the heads
    python manage.py verify_audit --check-heads heads.jsonl    # also check saved heads

Exit code 0 and "N chains verified" when every chain verifies; exit code 1 and
one line per broken chain ("BROKEN <chain> seq <n>: <reason>") otherwise.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from processes.audit import AuditHead, audit_heads, audit_heads_check, audit_verify_report


def _read_heads(path: str) -> Iterator[AuditHead]:
    with (sys.stdin if path == "-" else Path(path).open(encoding="utf-8")) as lines:
        for line in lines:
            if line.strip():
                item = json.loads(line)
                yield AuditHead(item["chain"], int(item["seq"]), item["hash"])


class Command(BaseCommand):
    help = "Verify the audit hash chains; exit 1 naming the first broken link of each broken chain."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--chain", help="verify only this chain, e.g. instance:42 or definitions")
        parser.add_argument("--export-heads", metavar="FILE",
                            help="write every chain head as JSON lines ('-' for stdout) after verifying")
        parser.add_argument("--check-heads", metavar="FILE",
                            help="check heads exported earlier are still in their chains")

    def handle(self, *args: Any, chain: str | None, export_heads: str | None, check_heads: str | None,
               **options: Any) -> None:
        report = audit_verify_report(chain=chain)
        breaks = list(report.breaks)
        if check_heads:
            breaks += audit_heads_check(_read_heads(check_heads))
        say = self.stderr if export_heads == "-" else self.stdout  # keep exported JSON lines clean
        for brk in breaks:
            say.write(f"BROKEN {brk}")
        if export_heads:
            self._export(export_heads)
        if breaks:
            raise CommandError(f"{len(breaks)} broken link(s) in {report.chains} chains", returncode=1)
        say.write(f"{report.chains} chains verified ({report.events} events)")

    def _export(self, path: str) -> None:
        out = self.stdout if path == "-" else Path(path).open("w", encoding="utf-8")
        try:
            for head in audit_heads():
                out.write(json.dumps({"chain": head.chain, "seq": head.seq, "hash": head.hash}) + "\n")
        finally:
            if out is not self.stdout:
                out.close()
