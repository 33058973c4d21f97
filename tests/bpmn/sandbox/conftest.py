"""Fixtures for the sandbox tests: a fresh, warm worker pool per test module.

No database is used. Each module gets its own pool (size 2) so a bomb in one
module cannot leave a dead worker for the next, and the pool is shut down at
the end so no worker process outlives the tests.
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from bpmn import sandbox
from bpmn.sandbox.pool import SandboxPool


@pytest.fixture(scope="module")
def pool() -> Iterator[SandboxPool]:
    """Yield a started pool of two workers; stop it after the module."""
    current = sandbox.configure_pool(size=2, max_calls=1000, memory_bytes=512 * 1024 * 1024)
    current.start()
    yield current
    sandbox.shutdown_pool()


def assert_pool_healthy() -> None:
    """Run a normal script and check its result (used after every bomb)."""
    data = {"x": 21}
    sandbox.execute("y = x * 2\nname = 'ok'", data)
    assert data == {"x": 21, "y": 42, "name": "ok"}
