"""Make the audit event table append-only in the database itself.

PostgreSQL: a row trigger refuses UPDATE and DELETE, a statement trigger
refuses TRUNCATE (which skips row triggers). This binds only a role that
neither owns the table nor is a superuser (an owner can disable triggers, a
superuser can set ``session_replication_role``): see ``db_grant_app_role``.
SQLite (embedded default, quick tests): ``RAISE(ABORT)`` triggers for UPDATE
and DELETE; cheap, and it makes tampering tests meaningful there too.

The SQL is kept here (not imported from app code) so the migration stays
frozen; tests and the test flush read these constants to lift the guard.
"""
from __future__ import annotations

from django.db import migrations

TABLE = "processes_auditevent"
MESSAGE = "audit events are append-only"
PG_FUNCTION = "baton_audit_append_only"
PG_ROW_TRIGGER = "audit_event_append_only"
PG_TRUNCATE_TRIGGER = "audit_event_no_truncate"

PG_CREATE = [
    f"""CREATE OR REPLACE FUNCTION {PG_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '{MESSAGE}' USING ERRCODE = 'insufficient_privilege',
        DETAIL = format('%s on %s refused', TG_OP, TG_TABLE_NAME);
END
$$""",
    f"""CREATE TRIGGER {PG_ROW_TRIGGER} BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION {PG_FUNCTION}()""",
    f"""CREATE TRIGGER {PG_TRUNCATE_TRIGGER} BEFORE TRUNCATE ON {TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION {PG_FUNCTION}()""",
]
PG_DROP = [
    f"DROP TRIGGER IF EXISTS {PG_TRUNCATE_TRIGGER} ON {TABLE}",
    f"DROP TRIGGER IF EXISTS {PG_ROW_TRIGGER} ON {TABLE}",
    f"DROP FUNCTION IF EXISTS {PG_FUNCTION}()",
]
# The table owner lifts the guard for a maintenance statement inside one transaction.
PG_DISABLE = [f"ALTER TABLE {TABLE} DISABLE TRIGGER {t}" for t in (PG_ROW_TRIGGER, PG_TRUNCATE_TRIGGER)]
PG_ENABLE = [f"ALTER TABLE {TABLE} ENABLE TRIGGER {t}" for t in (PG_ROW_TRIGGER, PG_TRUNCATE_TRIGGER)]

SQLITE_CREATE = [
    f"""CREATE TRIGGER IF NOT EXISTS audit_event_no_{op.lower()} BEFORE {op} ON {TABLE}
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END"""
    for op in ("UPDATE", "DELETE")
]
SQLITE_DROP = [f"DROP TRIGGER IF EXISTS audit_event_no_{op}" for op in ("update", "delete")]


def _run(statements_by_vendor: dict[str, list[str]]):
    def run(apps, schema_editor) -> None:
        for sql in statements_by_vendor.get(schema_editor.connection.vendor, []):
            schema_editor.execute(sql, params=None)

    return run


class Migration(migrations.Migration):

    dependencies = [("processes", "0001_initial")]

    operations = [
        migrations.RunPython(
            _run({"postgresql": PG_CREATE, "sqlite": SQLITE_CREATE}),
            _run({"postgresql": PG_DROP, "sqlite": SQLITE_DROP}),
            elidable=False,
        ),
    ]
