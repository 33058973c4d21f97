"""Grant the application's own PostgreSQL role what it needs, and no more.

Run as the schema owner (the role that ran the migrations)::

    DATABASE_URL=$DATABASE_OWNER_URL python manage.py db_grant_app_role baton_app

The audit trigger binds only a role that neither owns the audit table nor is a
superuser; this command gives such a role read/write access to every table
except UPDATE/DELETE/TRUNCATE on the audit events. Idempotent: re-run it
after migrations (default privileges already cover new tables the owner creates).
"""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from processes.models import AuditEvent


def grant_app_role(connection: BaseDatabaseWrapper, role: str, *, schema: str = "public") -> list[str]:
    """Grant ``role`` CRUD on the schema's tables except UPDATE/DELETE/TRUNCATE on audit events.

    Runs on ``connection`` as its current user, who must own the schema's
    objects. Refuses a superuser or the owner itself as application role,
    since neither is bound by the audit trigger. Returns the statements run.
    Also used by ``tests/conftest.py`` after creating the test database.
    """
    if connection.vendor != "postgresql":
        raise CommandError("db_grant_app_role is for PostgreSQL only")
    q = connection.ops.quote_name
    audit = q(AuditEvent._meta.db_table)
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [role])
        row = cursor.fetchone()
        if row is None:
            raise CommandError(f"role {role!r} does not exist")
        if row[0]:
            raise CommandError(f"role {role!r} is a superuser: the audit trigger would not bind it")
        cursor.execute("SELECT current_user, current_database()")
        user, database = cursor.fetchone()
        if user == role:
            raise CommandError(f"role {role!r} is the connected role: grant to a separate application role")
        cursor.execute("SELECT pg_has_role(%s, tableowner, 'USAGE') FROM pg_tables"
                       " WHERE tablename = %s AND schemaname = %s", [role, AuditEvent._meta.db_table, schema])
        owns = cursor.fetchone()
        if owns and owns[0]:
            raise CommandError(f"role {role!r} is (a member of) the audit table's owner: the trigger would not bind it")
        statements = [
            f"GRANT CONNECT, TEMPORARY ON DATABASE {q(database)} TO {q(role)}",
            f"GRANT USAGE ON SCHEMA {q(schema)} TO {q(role)}",
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {q(schema)} TO {q(role)}",
            f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {q(schema)} TO {q(role)}",
            f"REVOKE UPDATE, DELETE, TRUNCATE ON {audit} FROM {q(role)}",
            f"REVOKE UPDATE, DELETE, TRUNCATE ON {audit} FROM PUBLIC",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {q(schema)} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {q(role)}",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {q(schema)} GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {q(role)}",
        ]
        for sql in statements:
            cursor.execute(sql)
    return statements


class Command(BaseCommand):
    help = "Grant the application's PostgreSQL role CRUD on Baton's tables, audit events append-only."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("role", help="the application's role, e.g. baton_app")
        parser.add_argument("--schema", default="public")
        parser.add_argument("--database", default="default", help="database alias (connected as the owner)")

    def handle(self, *args: Any, role: str, schema: str, database: str, **options: Any) -> None:
        for sql in grant_app_role(connections[database], role, schema=schema):
            self.stdout.write(sql)
        self.stdout.write(self.style.SUCCESS(f"granted {role}; audit events are append-only for it"))
