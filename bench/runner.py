"""Time Baton beside raw SpiffWorkflow in the same run and print a table.

Uses a throw-away test database (SQLite by default; PostgreSQL when
``DATABASE_URL`` points at it), created and dropped by Django's test utilities.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time


def _time(fn, repeat: int) -> float:
    """Median seconds per call over ``repeat`` calls after one warm-up."""
    fn()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    if "--http" in argv:  # the HTTP scenario (gunicorn + loopback load): its own options, see bench/http.py
        from bench.http import main as http_main

        argv.remove("--http")
        return http_main(argv)
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--http", action="store_true", help="run the HTTP scenario instead (python -m bench --http -h)")
    args.add_argument("--repeat", type=int, default=0, help="override each scenario's repeat count")
    args.add_argument("--only", default="", help="run scenarios whose name contains this text")
    opts = args.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test.utils import setup_databases, teardown_databases

    from bench.scenarios import SCENARIOS, baton_run, raw_spiff_run
    from bpmn.services import definition_upload

    settings.DEBUG = False
    import logging

    logging.getLogger("baton").setLevel(logging.WARNING)  # per-command INFO lines would be measured too
    old = setup_databases(verbosity=0, interactive=False)
    try:
        requester = get_user_model().objects.create_user("bench-requester", password="bench-pw-123")
        approver = get_user_model().objects.create_user("bench-approver", password="bench-pw-123")
        vendor = connection.vendor
        print(f"Baton vs raw SpiffWorkflow, database: {vendor}, per instance (median)")
        header = f"{'scenario':<48} {'raw spiff':>11} {'baton':>11} {'ratio':>7} {'SQL/completion':>15}"
        print(header)
        print("-" * len(header))
        for scenario in SCENARIOS:
            if opts.only and opts.only not in scenario.name:
                continue
            files = [(scenario.diagram.name, scenario.diagram.read_bytes())]
            files += [(p.name, p.read_bytes()) for p in scenario.diagram.parent.glob("*.json")]
            definition_upload(files=files, uploaded_by=None)
            repeat = opts.repeat or scenario.repeat
            statements: list[int] = []
            raw = _time(raw_spiff_run(scenario), repeat)
            baton = _time(baton_run(scenario, requester, approver, statements), repeat)
            sql = f"{max(statements)}" if statements else "-"
            print(f"{scenario.name:<48} {raw * 1000:>9.1f}ms {baton * 1000:>9.1f}ms {baton / raw:>6.1f}x {sql:>15}")
    finally:
        teardown_databases(old, verbosity=0)
    return 0
