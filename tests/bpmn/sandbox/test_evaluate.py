"""Expressions in-process: what business conditions need works, bombs end fast (S3).

Expressions run in the web process, so the caps are the only defence; each
bomb must end as SandboxLimitExceeded (or the user's RecursionError) within
seconds, and ordinary conditions must cost microseconds.
"""
from __future__ import annotations

import threading
import time
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest

from bpmn import sandbox


@pytest.mark.parametrize("source, context, expected", [
    ("amount > 1000 and category in ['travel', 'it']", {"amount": 1500, "category": "it"}, True),
    ("amount > 1000 and category in ['travel', 'it']", {"amount": 1500, "category": "food"}, False),
    ("order['items'][0]['qty'] * 2", {"order": {"items": [{"qty": 3}]}}, 6),
    ("order.get('missing', 'none')", {"order": {}}, "none"),
    ("len(items) >= 2 and items[-1] == 'c'", {"items": ["a", "b", "c"]}, True),
    ("name.strip().lower().startswith('acme')", {"name": "  ACME Corp "}, True),
    ("', '.join(sorted(names, key=lambda n: n.lower()))", {"names": ["b", "A", "c"]}, "A, b, c"),
    ("'-'.join(s.upper() for s in parts)", {"parts": ["a", "b"]}, "A-B"),
    ("sum(l['amount'] for l in lines) > 100", {"lines": [{"amount": 60}, {"amount": 50}]}, True),
    ("max(scores) - min(scores)", {"scores": [3, 9, 4]}, 6),
    ("[x * 2 for x in range(5) if x % 2 == 0]", {}, [0, 4, 8]),
    ("{k: v for k, v in d.items() if v}", {"d": {"a": 1, "b": 0}}, {"a": 1}),
    ("f'{first} {last}'.title()", {"first": "ada", "last": "lovelace"}, "Ada Lovelace"),
    ("f'{amount:,.2f}'", {"amount": 1234.5}, "1,234.50"),
    ("'%s-%05d' % (prefix, n)", {"prefix": "INV", "n": 42}, "INV-00042"),
    ("'ab' * 3 + 'c'", {}, "abababc"),
    ("2 ** 10 + (1 << 4)", {}, 1040),
    ("str(n).zfill(6)", {"n": 42}, "000042"),
    ("int('12') + float('0.5')", {}, 12.5),
    ("round(Decimal('2.346'), 2)", {}, Decimal("2.35")),
    ("Decimal(price) * qty", {"price": "1.10", "qty": 3}, Decimal("3.30")),
    ("approved if approved is not None else False", {"approved": None}, False),
    ("(end - start).days", {"start": date(2024, 1, 1), "end": date(2024, 3, 1)}, 60),
    ("due + timedelta(days=2)", {"due": datetime(2024, 1, 31, 9)}, datetime(2024, 2, 2, 9)),
    ("date.today() - timedelta(days=1) < date.today()", {}, True),
    ("datetime.now() > datetime(2020, 1, 1)", {}, True),
    ("datetime.fromisoformat(s).year", {"s": "2024-05-06T07:08:09"}, 2024),
    ("datetime.strptime(s, '%d/%m/%Y').month", {"s": "06/05/2024"}, 5),
    ("d.strftime('%Y-%m')", {"d": date(2024, 5, 6)}, "2024-05"),
    ("timedelta(hours=36).total_seconds()", {}, 129600.0),
    ("str.lower(s)", {"s": "ABC"}, "abc"),
    ("type == 'travel'", {"type": "travel"}, True),
    ("(x for x in range(3))", {}, [0, 1, 2]),
    ("sorted(set(tags))", {"tags": ["b", "a", "b"]}, ["a", "b"]),
    ("any(t.isdigit() for t in tokens)", {"tokens": ["a", "1"]}, True),
    ("list(zip(a, b))", {"a": [1, 2], "b": "xy"}, [(1, "x"), (2, "y")]),
    ("dict(enumerate(reversed(a)))", {"a": [1, 2]}, {0: 2, 1: 1}),
    ("divmod(7, 2) + (pow(2, 8), abs(-1))", {}, (3, 1, 256, 1)),
    ("(y := amount * 2) > 10 and y < 100", {"amount": 6}, True),
])
def test_business_expressions(source: str, context: dict, expected: object) -> None:
    assert sandbox.check_expression(source) == []
    assert sandbox.evaluate(source, context) == expected


def test_context_wins_over_extra_and_extra_is_visible() -> None:
    assert sandbox.evaluate("a + b", {"a": 1}, {"a": 100, "b": 2}) == 3


def test_xml_indented_expression_keeps_line_numbers() -> None:
    assert sandbox.evaluate("\n      amount > 1\n   ", {"amount": 2}) is True
    with pytest.raises(sandbox.ScriptFailed) as info:
        sandbox.evaluate("\n\n  (1 +\n   missing)", {})
    assert info.value.line == 3 or info.value.line == 4


def test_user_error_keeps_original_type_message_and_line() -> None:
    with pytest.raises(sandbox.ScriptFailed) as info:
        sandbox.evaluate("1 / 0", {})
    err = info.value
    assert (err.error_type, err.message) == ("ZeroDivisionError", "division by zero")
    assert isinstance(err.original, ZeroDivisionError)
    assert 'File "<expression>", line 1' in err.traceback_text
    assert err.traceback_text.endswith("ZeroDivisionError: division by zero")
    assert "caps.py" not in err.traceback_text and "runtime.py" not in err.traceback_text

    with pytest.raises(sandbox.ScriptFailed) as info:
        sandbox.evaluate("d['missing']", {"d": {}})
    assert (info.value.error_type, info.value.message) == ("KeyError", "'missing'")

    with pytest.raises(sandbox.ScriptFailed) as info:
        sandbox.evaluate("amount > 1", {})
    assert (info.value.error_type, info.value.message) == ("NameError", "name 'amount' is not defined")

    with pytest.raises(sandbox.ScriptFailed) as info:
        sandbox.evaluate("n.lower()", {"n": 5})  # a listed method on the wrong type
    assert (info.value.error_type, info.value.message) == (
        "AttributeError", "'int' object has no attribute 'lower'")


def _timed_limit(source: str, context: dict | None = None, within: float = 2.0) -> str:
    start = time.monotonic()
    with pytest.raises(sandbox.SandboxLimitExceeded) as info:
        sandbox.evaluate(source, context or {})
    elapsed = time.monotonic() - start
    assert elapsed < within, f"{source!r} took {elapsed:.2f} s"
    return info.value.message


def test_s3_sum_of_huge_range_refused_quickly() -> None:
    assert "range()" in _timed_limit("sum(range(10**12))")


@pytest.mark.parametrize("source", [
    "'x' * 10**10",
    "10**10 * 'x'",
    "[0] * 10**9",
    "(s + s) * 10**6",
    "''.join(['x' * 10**6] * 11)",
    "s.replace('x', s)",
    "s.ljust(10**11)",
    "'%10000000000d' % 1",
    "f'{s}' * 10**7",
])
def test_s3_size_bombs_refused(source: str) -> None:
    assert _timed_limit(source, {"s": "xy" * 5000})


@pytest.mark.parametrize("source", [
    "2 ** (10 ** 10)",
    "pow(7, 10**8)",
    "1 << 10**9",
    "(10**3000) * (10**3000) * (10**3000) * (10**3000)",
    "round(5, -10**9)",
])
def test_s3_integer_bombs_refused(source: str) -> None:
    _timed_limit(source)


@pytest.mark.parametrize("source", [
    "[1 for a in range(10**6) for b in range(10**6)]",
    "sum(1 for a in range(10**6) for b in range(10**6))",
    "[list(range(10**6)) for i in range(100)]",
    "[big[:] for i in range(10**6)]",
    "[s.upper() for i in range(10**6)]",
    "(lambda f: f(f, 0))(lambda f, n: n < 60 and (f(f, n + 1) or f(f, n + 1)))",
    "[x in big for x in range(10**6)]",
    "[bin(2**9999) for i in range(10**6)]",
    "sorted(range(10**6), key=lambda i: bin(2**9999))",
    "[l.append(bin(2**9999)) for l in [[]] for i in range(10**6)]",
    "list(zip(*[big] * 1000))",
    "[[*s] for i in range(100)]",
    "[(*big, *big) for i in range(100)]",
    "[{**d} for d in [{k: 1 for k in range(1000)}] for i in range(10**5)]",
    # hash collisions: one C call building a set/dict from colliding ints is quadratic
    "set([i * (2**61 - 1) for i in range(10**6)])",
    "len({*collide})",
    "len(dict([(k, 1) for k in collide]))",
    "len(set().union(collide))",
])
def test_s3_work_bombs_end_within_seconds(source: str, settings: Any) -> None:
    settings.BATON_SCRIPT_CPU_SECONDS = 0.5  # the in-process CPU limit comes from settings
    context = {"big": list(range(10**6)), "s": "x" * 5_000_000,
               "collide": [i * (2**61 - 1) for i in range(200_000)]}
    _timed_limit(source, context, within=3.0)


@pytest.mark.parametrize("source", [
    "Decimal('9' * 10**6)",
    "int(Decimal('1e100000000'))",
    "round(Decimal('1e100000000'))",
    "f'{Decimal(\"1e100000000\"):f}'",
    "'%d' % Decimal('1e100000000')",
    "datetime.strptime('1' * 2000, '%Y')",
    "('\\t' * 1000).expandtabs(10**5)",
])
def test_s3_decimal_and_date_bombs_refused(source: str) -> None:
    _timed_limit(source, within=1.0)


def test_s3_lambda_recursion_ends_as_recursion_error() -> None:
    start = time.monotonic()
    with pytest.raises(sandbox.ScriptFailed) as info:
        sandbox.evaluate("(lambda f: f(f))(lambda f: f(f))", {})
    assert info.value.error_type == "RecursionError"
    assert time.monotonic() - start < 2
    assert info.value.traceback_text.count("\n") < 30  # repeated frames are collapsed


def test_cached_evaluate_costs_microseconds(capsys: pytest.CaptureFixture[str]) -> None:
    source = "amount > 1000 and category in ['travel', 'it']"
    context = {"amount": 1500, "category": "it", "other": [1, 2, 3]}
    sandbox.evaluate(source, context)
    runs = 20_000
    start = time.perf_counter()
    for _ in range(runs):
        sandbox.evaluate(source, context)
    per_call = (time.perf_counter() - start) / runs
    with capsys.disabled():
        print(f"\n[sandbox] evaluate() of a gateway condition: {per_call * 1e6:.2f} us per call")
    assert per_call < 100e-6


def test_evaluate_is_thread_safe() -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(300):
                assert sandbox.evaluate("[x * k for x in range(50)][-1]", {"k": n + i}) == 49 * (n + i)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
