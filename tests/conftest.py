"""Session-wide test set-up shared by every app's tests.

On PostgreSQL with ``DATABASE_OWNER_URL`` set, the test database is created
and migrated as the schema owner, the application role gets its grants
(``db_grant_app_role``), and tests run as the application role, exactly as in
production; otherwise pytest-django's default set-up is kept. Transactional
tests flush tables at teardown, which the append-only audit guard refuses, so
the flush lifts the guard for its own statement (as the owner on PostgreSQL).
"""
from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import environ
import pytest
from django.conf import settings
from django.db import connections, transaction


def audit_guard_sql() -> Any:
    """Return the migration module that holds the audit guard's SQL (one source of truth)."""
    return importlib.import_module("processes.migrations.0002_audit_guard")


def _owner_credentials() -> dict[str, Any] | None:
    """Return the owner's USER/PASSWORD when the app and owner roles are split, else None."""
    if not settings.IS_POSTGRES or not settings.DATABASE_OWNER_URL:
        return None
    owner = environ.Env.db_url_config(settings.DATABASE_OWNER_URL)
    return {"USER": owner["USER"], "PASSWORD": owner["PASSWORD"]}


@contextmanager
def as_db_owner(alias: str = "default") -> Iterator[None]:
    """Connect ``alias`` as the schema owner inside the block (no-op without a role split).

    Closes the connection on entry and exit so the next query reconnects with
    the right role; costs two reconnects.
    """
    owner, conn = _owner_credentials(), connections[alias]
    if owner is None or conn.vendor != "postgresql":
        yield
        return
    saved = {key: conn.settings_dict.get(key) for key in owner}
    conn.close()
    conn.settings_dict.update(owner)
    try:
        yield
    finally:
        conn.close()
        conn.settings_dict.update(saved)


@contextmanager
def audit_guard_lifted(alias: str = "default") -> Iterator[None]:
    """Lift the append-only audit guard for the block (test maintenance only: flush, tampering).

    SQLite: drop and recreate the triggers. PostgreSQL: as the owner, disable
    the triggers inside one transaction, so they are back on at its end even
    when the block fails.
    """
    conn, guard = connections[alias], audit_guard_sql()
    if conn.vendor == "sqlite":
        with conn.cursor() as cursor:
            for sql in guard.SQLITE_DROP:
                cursor.execute(sql)
        try:
            yield
        finally:
            with conn.cursor() as cursor:
                for sql in guard.SQLITE_CREATE:
                    cursor.execute(sql)
    elif conn.vendor == "postgresql":
        with as_db_owner(alias), transaction.atomic(using=alias):
            with conn.cursor() as cursor:
                for sql in guard.PG_DISABLE:
                    cursor.execute(sql)
            yield
            with conn.cursor() as cursor:
                for sql in guard.PG_ENABLE:
                    cursor.execute(sql)
    else:
        yield


@pytest.fixture(scope="session", autouse=True)
def _flush_past_audit_guard() -> Iterator[None]:
    """Let transactional tests flush their tables although audit events are append-only."""
    from django.test import TransactionTestCase

    original = TransactionTestCase._fixture_teardown

    def _fixture_teardown(self: TransactionTestCase) -> None:
        with ExitStack() as stack:
            for alias in self._databases_names(include_mirrors=False):
                stack.enter_context(audit_guard_lifted(alias))
            original(self)

    TransactionTestCase._fixture_teardown = _fixture_teardown
    yield
    TransactionTestCase._fixture_teardown = original


@pytest.fixture(scope="session")
def django_db_setup(  # noqa: PLR0913 - same signature as pytest-django's fixture
    request: pytest.FixtureRequest,
    django_test_environment: None,
    django_db_blocker: Any,
    django_db_use_migrations: bool,
    django_db_keepdb: bool,
    django_db_createdb: bool,
    django_db_modify_db_settings: None,
) -> Iterator[None]:
    """Create the test databases as pytest-django does, but as the owner when roles are split.

    Mirrors ``pytest_django.fixtures.django_db_setup`` (4.14) and adds: set-up
    and teardown as the owner from ``DATABASE_OWNER_URL``, then the app-role
    grants (also CONNECT/TEMP on the test database, which xdist suffixes).
    """
    from django.test.utils import setup_databases, teardown_databases
    from pytest_django.fixtures import _disable_migrations, _get_databases_for_setup

    from core.management.commands.db_grant_app_role import grant_app_role

    kwargs: dict[str, Any] = {}
    if not django_db_use_migrations:
        _disable_migrations()
    if django_db_keepdb and not django_db_createdb:
        kwargs["keepdb"] = True
    aliases, serialized_aliases = _get_databases_for_setup(request.session.items)
    app_role = connections["default"].settings_dict["USER"]
    verbosity = request.config.option.verbose
    with django_db_blocker.unblock(), as_db_owner():
        db_cfg = setup_databases(verbosity=verbosity, interactive=False, aliases=aliases,
                                 serialized_aliases=serialized_aliases, **kwargs)
        if _owner_credentials() is not None and "default" in aliases:
            grant_app_role(connections["default"], app_role)
    yield
    if not django_db_keepdb:
        with django_db_blocker.unblock(), as_db_owner():
            try:
                teardown_databases(db_cfg, verbosity=verbosity)
            except Exception as exc:  # noqa: BLE001 - a warning, as pytest-django does
                request.node.warn(pytest.PytestWarning(f"Error when trying to teardown test databases: {exc!r}"))


@pytest.fixture(scope="session")
def pg_owner_connection(django_db_setup: None) -> Iterator[Any]:
    """Yield an autocommit psycopg connection to the test database as the schema owner.

    For tests that must bypass the application role (e.g. to tamper with audit
    rows). Without a role split it connects with the application's own
    credentials. It sees only committed rows, so use it from transactional
    tests; a 5 s lock timeout keeps it from waiting on the test's own locks.
    """
    conn = connections["default"]
    if conn.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
    import psycopg

    params = {**conn.settings_dict, **(_owner_credentials() or {})}
    with psycopg.connect(host=params["HOST"] or None, port=str(params["PORT"] or "") or None,
                         dbname=params["NAME"], user=params["USER"] or None,
                         password=params["PASSWORD"] or None, autocommit=True) as owner:
        owner.execute("SET lock_timeout = '5s'")
        yield owner


@pytest.fixture(autouse=True)
def _empty_django_cache() -> Iterator[None]:
    """Each test starts with an empty cache: ids and clocks repeat between tests (rolled back, frozen)."""
    from django.core.cache import cache

    cache.clear()
    yield
