"""Scripts in the worker pool: results, original errors, bombs (S3), threads, lifecycle.

Every bomb must end as SandboxLimitExceeded (or the user's RecursionError)
within its limit plus a margin, and the pool must run a normal script
correctly right after it.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from bpmn import sandbox
from bpmn.sandbox.pool import SandboxPool

from .conftest import assert_pool_healthy

ROOT = Path(__file__).resolve().parents[3]


def test_script_sets_several_variables_and_deletes_one(pool: SandboxPool) -> None:
    data = {"amount": 120, "tmp": "x", "items": [1, 2]}
    sandbox.execute(textwrap.dedent("""
        total = amount * 2
        label = f'Total: {total}'
        items.append(3)
        approved = total > 200
        del tmp
    """), data)
    assert data == {"amount": 120, "items": [1, 2, 3], "total": 240, "label": "Total: 240",
                    "approved": True}


def test_script_control_flow_helpers_and_types_round_trip(pool: SandboxPool) -> None:
    data = {"lines": [{"qty": 2, "price": "1.50"}, {"qty": 1, "price": "2.25"}],
            "start": date(2024, 1, 31), "when": datetime(2024, 1, 1, 8, 30)}
    sandbox.execute(textwrap.dedent("""
        def line_total(line):
            return Decimal(line['price']) * line['qty']

        total = Decimal('0')
        for line in lines:
            total += line_total(line)
        n = 0
        while n < 5:
            n += 1
            if n == 3:
                continue
        try:
            bad = int('x')
        except ValueError as exc:
            bad = -1
        due = start + timedelta(days=2)
        later = when + timedelta(hours=1)
        pair = (1, 'a')
        tags = {'x', 'y'}
        by_id = {1: 'one'}
        note = None
    """), data)
    assert data["total"] == Decimal("5.25") and data["n"] == 5 and data["bad"] == -1
    assert data["due"] == date(2024, 2, 2) and data["later"] == datetime(2024, 1, 1, 9, 30)
    assert data["pair"] == (1, "a") and data["tags"] == {"x", "y"} and data["by_id"] == {1: "one"}
    assert "line_total" not in data and "exc" not in data and data["note"] is None


def test_extra_names_are_visible_but_not_returned(pool: SandboxPool) -> None:
    data = {"a": 1}
    sandbox.execute("b = a + limit", data, {"limit": 10})
    assert data == {"a": 1, "b": 11}
    with pytest.raises(sandbox.SandboxError):
        sandbox.execute("b = 1", {"limit": 1}, {"limit": 10})


@pytest.mark.parametrize("script, error_type, message, line", [
    ("x = 1\ny = x / 0", "ZeroDivisionError", "division by zero", 2),
    ("d = {}\nv = d['missing']", "KeyError", "'missing'", 2),
    ("def check(v):\n    if v < 0:\n        raise ValueError('negative amount')\ncheck(-1)",
     "ValueError", "negative amount", 3),
    ("assert amount > 10, 'too small'", "AssertionError", "too small", 1),
    ("y = undefined_name + 1", "NameError", "name 'undefined_name' is not defined", 1),
    ("gen = (i for i in range(3))", "TypeError",
     "variable 'gen' holds a value of type 'generator', which cannot be stored in task data", 0),
])
def test_script_error_keeps_original_type_and_message(pool: SandboxPool, script: str, error_type: str,
                                                      message: str, line: int) -> None:
    data = {"amount": 5}
    with pytest.raises(sandbox.ScriptFailed) as info:
        sandbox.execute(script, data)
    err = info.value
    assert (err.error_type, err.message, err.line) == (error_type, message, line)
    assert err.traceback_text.endswith(f"{error_type}: {message}")
    if line:
        assert f'File "<script>", line {line}' in err.traceback_text
    assert "worker.py" not in err.traceback_text and "caps.py" not in err.traceback_text
    assert data == {"amount": 5}  # unchanged on error


def test_refused_script_never_reaches_a_worker(pool: SandboxPool) -> None:
    with pytest.raises(sandbox.SandboxViolation) as info:
        sandbox.execute("import os\nos.system('true')", {})
    assert "imports are not allowed" in info.value.problems


def test_unencodable_task_data_is_refused_clearly(pool: SandboxPool) -> None:
    with pytest.raises(sandbox.SandboxError, match="variable 'f'"):
        sandbox.execute("x = 1", {"f": object()})


def _timed(exc_type: type[Exception], script: str, within: float, **limits: float) -> Exception:
    start = time.monotonic()
    with pytest.raises(exc_type) as info:
        sandbox.execute(script, {}, **limits)
    elapsed = time.monotonic() - start
    assert elapsed < within, f"{script!r} took {elapsed:.2f} s"
    assert_pool_healthy()
    return info.value


def test_s3_infinite_loop_killed_at_wall_limit(pool: SandboxPool) -> None:
    before = set(pool.worker_pids())
    err = _timed(sandbox.SandboxLimitExceeded, "while True:\n    pass", within=1 + 2,
                 wall_seconds=1, cpu_seconds=30)
    assert err.message == "script exceeded the 1 s time limit"
    after = set(pool.worker_pids())
    assert len(after) == pool.size and after != before  # killed and replaced


def test_s3_infinite_loop_stopped_at_cpu_limit(pool: SandboxPool) -> None:
    err = _timed(sandbox.SandboxLimitExceeded, "n = 0\nwhile True:\n    n += 1", within=1 + 2,
                 wall_seconds=10, cpu_seconds=1)
    assert "1 s CPU time limit" in err.message


def test_s3_busy_wait_in_c_code_killed_at_wall_limit(pool: SandboxPool) -> None:
    script = "big = list(range(10**6))\nwhile True:\n    x = [v in big for v in range(300)]"
    _timed(sandbox.SandboxLimitExceeded, script, within=1 + 2, wall_seconds=1)


@pytest.mark.parametrize("script", [
    "x = [0] * (10**9)",
    "b = 'x' * 10**9",
    "b = 'x' * 10**7\nwhile True:\n    b = b + b",
    "b = 'x' * 10**7\nwhile True:\n    b += b",
    "parts = []\nwhile True:\n    parts.append('x' * 10**7 + str(len(parts)))",
    "keep = []\nwhile True:\n    keep.append(list(range(10**6)))",
    "s = 'x' * 10**7\nt = [s.upper() for i in range(1000)]",
    "a = 10**3000\nwhile True:\n    a = a * a",
    "x = 2 ** (10**10)",
    "total = sum(range(10**12))",
])
def test_s3_memory_and_size_bombs_refused(pool: SandboxPool, script: str) -> None:
    _timed(sandbox.SandboxLimitExceeded, script, within=5 + 3, wall_seconds=5)


def test_s3_deep_recursion_ends_in_seconds(pool: SandboxPool) -> None:
    err = _timed(sandbox.ScriptFailed, "def f(n):\n    return f(n + 1)\nf(0)", within=5)
    assert err.error_type == "RecursionError"


def test_s3_deeply_nested_result_is_refused(pool: SandboxPool) -> None:
    script = "x = []\nfor i in range(100000):\n    x = [x]"
    start = time.monotonic()
    with pytest.raises(sandbox.SandboxError):
        sandbox.execute(script, {})
    assert time.monotonic() - start < 5
    assert_pool_healthy()


def test_thread_safety_8_threads_x_20_scripts(pool: SandboxPool) -> None:
    errors: list[BaseException] = []

    def work(thread: int) -> None:
        try:
            for i in range(20):
                data = {"t": thread, "i": i}
                sandbox.execute("out = t * 1000 + i\nsquares = [k * k for k in range(i)]", data)
                assert data["out"] == thread * 1000 + i
                assert data["squares"] == [k * k for k in range(i)]
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []


def test_trivial_script_overhead_once_warm(pool: SandboxPool, capsys: pytest.CaptureFixture[str]) -> None:
    sandbox.execute("y = x + 1", {"x": 1})
    runs = 500
    start = time.perf_counter()
    for i in range(runs):
        data = {"x": i}
        sandbox.execute("y = x + 1", data)
        assert data["y"] == i + 1
    per_call = (time.perf_counter() - start) / runs
    with capsys.disabled():
        print(f"\n[sandbox] execute() of a trivial script on a warm pool: {per_call * 1e3:.3f} ms per call")
    assert per_call < 5e-3


def test_workers_are_recycled_after_max_calls() -> None:
    own = SandboxPool(size=1, max_calls=3)
    try:
        pids = []
        for i in range(7):
            request = {"src": "j = i", "ctx": {"i": i}, "extra": {}, "cpu": 2.0}
            assert own.run(request, 5.0, 2.0) == {"i": i, "j": i}
            pids.append(own.worker_pids()[0])
        assert len(set(pids)) == 3  # calls 1-3, 4-6, 7
    finally:
        own.close()
    assert own.worker_pids() == []
    assert _gone(pids, within=5)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return "gone"


def _gone(pids: list[int], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if all(_state(pid) in ("gone", "Z", "X") for pid in pids):
            return True
        time.sleep(0.05)
    return False


_CHILD = textwrap.dedent("""
    import os, sys, time
    from bpmn import sandbox
    data = {"x": 1}
    sandbox.execute("y = x + 1", data)
    assert data["y"] == 2
    pid = os.fork()
    if pid == 0:  # a forked web worker gets its own pool and leaves the parent's alone
        d = {"x": 5}
        sandbox.execute("y = x + 1", d)
        os._exit(0 if d["y"] == 6 else 1)
    assert os.waitpid(pid, 0)[1] == 0
    sandbox.execute("y = x + 1", data)
    print(" ".join(map(str, sandbox.get_pool().worker_pids())), flush=True)
    if sys.argv[1] == "hang":
        time.sleep(60)
""")


@pytest.mark.parametrize("ending", ["exit", "hang"])
def test_no_orphan_workers_after_exit_or_kill(ending: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, ending], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()  # type: ignore[union-attr]
    pids = [int(p) for p in line.split()]
    assert len(pids) == 2, line
    if ending == "hang":
        proc.send_signal(signal.SIGKILL)  # no atexit: workers must still leave (EOF on stdin)
    assert proc.wait(timeout=20) in (0, -signal.SIGKILL)
    proc.stdout.close()  # type: ignore[union-attr]
    assert _gone(pids, within=5), [(_state(p), p) for p in pids]


def test_caps_cannot_be_swallowed_by_try_finally(pool: SandboxPool) -> None:
    script = textwrap.dedent("""
        def spin():
            try:
                while True:
                    pass
            finally:
                return 1
        while True:
            try:
                spin()
            finally:
                continue
    """)
    err = _timed(sandbox.SandboxLimitExceeded, script, within=1 + 2, wall_seconds=10, cpu_seconds=1)
    assert "1 s CPU time limit" in err.message


def test_bound_methods_that_retain_or_grow_cannot_be_aliased() -> None:
    for source in ("f = items.append", "f = list.append", "f = d.setdefault", "f = s.add",
                   "f = items.extend", "f = ''.join"):
        assert sandbox.check_script(source), source


def test_pool_recovers_when_a_worker_cannot_be_started(monkeypatch: pytest.MonkeyPatch) -> None:
    from bpmn.sandbox import pool as pool_module

    real = pool_module._Worker
    failures = iter([True, True, False])

    def flaky(memory_bytes: int) -> object:
        if next(failures, False):
            raise OSError("fork failed")
        return real(memory_bytes)

    own = SandboxPool(size=2)
    monkeypatch.setattr(pool_module, "_Worker", flaky)
    try:
        own.start()  # both spawns fail: two missing slots, no worker
        assert own.worker_pids() == []
        request = {"src": "y = 1", "ctx": {}, "extra": {}, "cpu": 2.0}
        assert own.run(request, 5.0, 2.0) == {"y": 1}  # a missing slot is re-created on demand
    finally:
        own.close()


def test_workers_run_under_rlimits_without_the_parents_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_TEST_SECRET", "do-not-leak")
    own = SandboxPool(size=1, memory_bytes=256 * 1024 * 1024)
    try:
        own.run({"src": "y = 1", "ctx": {}, "extra": {}, "cpu": 2.0}, 5.0, 2.0)
        (pid,) = own.worker_pids()
        assert b"do-not-leak" not in Path(f"/proc/{pid}/environ").read_bytes()
        limits = Path(f"/proc/{pid}/limits").read_text()
        assert any(line.startswith("Max address space") and str(256 * 1024 * 1024) in line
                   for line in limits.splitlines()), limits
        assert any(line.startswith("Max core file size") and " 0 " in f" {line} " for line in limits.splitlines())
    finally:
        own.close()
