"""Count the work of a run and cap the operators, loops, slices and f-strings.

In-process code cannot be interrupted by a signal while C code runs
(``sum(range(10**12))`` ignores SIGALRM), so the defence is to never start an
operation that is too big: every operation that can multiply size or time
(``range``, ``*``, ``**``, ``<<``, ``join``, ``replace``, constructors,
slices ...) checks its result size *before* allocating where it can, and
charges what it produced to a per-run work ``Budget``. Loop iterations,
function calls and lambda calls charge one unit each, and every
``CLOCK_CHECK_EVERY`` units the budget reads the thread's CPU clock, so a run
ends within about its CPU limit plus one bounded C operation. Method calls
live in ``methods``, builtins in ``constructors``; ``runtime`` assembles the
builtins table.

Invariant: helpers never expose a private attribute and never call anything
the checker would refuse; ``LimitHit`` is a ``BaseException`` so user
``try/except`` cannot swallow it.
"""
from __future__ import annotations

import math
import re
import sys
import threading
import time
from decimal import Decimal
from typing import Any

from . import policy
from .errors import LimitHit

_state = threading.local()
_SEQ_TYPES = (str, bytes, list, tuple)
_TEXT_TYPES = (str, bytes)
_CONTAINERS = (list, tuple, dict, set, frozenset)
_getsizeof = sys.getsizeof
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")


class Budget:
    """Count work units for one run and enforce its CPU-time limit.

    ``cpu_seconds`` None means "read BATON_SCRIPT_CPU_SECONDS at the first
    clock check", so trivial expressions never pay for a settings lookup or a
    clock read (~0.5 us each).
    """

    __slots__ = ("left", "pending", "deadline", "cpu_seconds", "what", "reason")

    def __init__(self, units: int, cpu_seconds: float | None, what: str) -> None:
        """Start with ``units`` of work and a CPU limit (None: read from settings later)."""
        self.left = units
        self.pending = 0
        self.deadline: float | None = None
        self.cpu_seconds = cpu_seconds
        self.what = what
        self.reason = f"{what} exceeded the work limit (too many loop iterations or too much data produced)"

    def charge(self, units: int) -> None:
        """Spend ``units``; raise LimitHit when the work or CPU budget is gone (for good)."""
        self.left -= units
        if self.left < 0:
            raise LimitHit(self.reason)
        self.pending += units
        if self.pending >= policy.CLOCK_CHECK_EVERY:
            self.pending = 0
            now = time.thread_time()
            if self.deadline is None:
                if self.cpu_seconds is None:
                    from .config import setting
                    self.cpu_seconds = float(setting("BATON_SCRIPT_CPU_SECONDS"))
                self.deadline = now + self.cpu_seconds
            elif now > self.deadline:
                self.left = -1  # sticky: a script's try/finally cannot buy more time
                self.reason = f"{self.what} exceeded the {self.cpu_seconds:g} s CPU time limit"
                raise LimitHit(self.reason)


def activate(budget: Budget) -> Budget | None:
    """Make ``budget`` the current thread's budget; return the previous one for ``restore``."""
    previous = getattr(_state, "budget", None)
    _state.budget = budget
    return previous


def restore(previous: Budget | None) -> None:
    """Put back the budget that ``activate`` replaced."""
    _state.budget = previous


def current_budget() -> Budget:
    """Return the running code's budget (a fresh one for code run outside ``evaluate``)."""
    budget = getattr(_state, "budget", None)
    if budget is None:
        budget = Budget(policy.EXPRESSION_WORK_UNITS, None, "expression")
    return budget


def _charge_result(result: Any) -> Any:
    """Charge what a call produced: one unit per item, one per 8 characters."""
    kind = type(result)
    if kind is str or kind is bytes:
        units = len(result) >> 3
    elif kind in _CONTAINERS:
        units = len(result)
    else:
        return result
    if units:
        current_budget().charge(units)
    return result


def _check_chars(size: int, what: str = "string") -> None:
    """Refuse a string of ``size`` characters before it is built."""
    if size > policy.MAX_STR_CHARS:
        raise LimitHit(f"a {what} of {size} characters exceeds the limit of {policy.MAX_STR_CHARS}")


def _check_size(kind: type, size: int) -> None:
    """Refuse a sequence of ``size`` elements of type ``kind`` before building it."""
    if issubclass(kind, _TEXT_TYPES):
        _check_chars(size)
    elif size > policy.MAX_ITEMS:
        raise LimitHit(f"a {kind.__name__} of {size} items exceeds the limit of {policy.MAX_ITEMS}")


def _check_decimal(value: Any) -> None:
    """Refuse Decimals whose full expansion (int(), 'f' formatting) would be huge."""
    if isinstance(value, Decimal) and value.is_finite() and value and \
            abs(value.adjusted()) > policy.MAX_DECIMAL_EXPONENT:
        raise LimitHit(f"a Decimal with an exponent beyond {policy.MAX_DECIMAL_EXPONENT} "
                       "cannot be converted or formatted in full")


# --- operators ------------------------------------------------------------------

def _sb_add(a: Any, b: Any) -> Any:
    """Add, refusing string/sequence concatenations above the size caps."""
    if isinstance(a, _SEQ_TYPES) and isinstance(b, _SEQ_TYPES):
        _check_size(type(a), len(a) + len(b))
        return _charge_result(a + b)
    return a + b


def _repeat(seq: Any, times: int) -> Any:
    """Repeat a sequence if the result stays under its size cap."""
    _check_size(type(seq), len(seq) * max(times, 0))
    return _charge_result(seq * times)


def _sb_mul(a: Any, b: Any) -> Any:
    """Multiply, capping integer size and sequence repetition."""
    if isinstance(a, int):
        if isinstance(b, int):
            if a.bit_length() + b.bit_length() > policy.MAX_INT_BITS:
                raise LimitHit(f"an integer above {policy.MAX_INT_BITS} bits is not allowed")
            return a * b
        if isinstance(b, _SEQ_TYPES):
            return _repeat(b, a)
    elif isinstance(a, _SEQ_TYPES) and isinstance(b, int):
        return _repeat(a, b)
    return a * b


def _sb_pow(a: Any, b: Any) -> Any:
    """Raise to a power unless the integer result would exceed MAX_INT_BITS."""
    if isinstance(a, int) and isinstance(b, int) and b > 1 and a not in (0, 1, -1):
        if b * math.log2(abs(a)) > policy.MAX_INT_BITS:
            raise LimitHit(f"a power above {policy.MAX_INT_BITS} bits is not allowed")
    return a ** b


def _sb_lshift(a: Any, b: Any) -> Any:
    """Shift left unless the integer result would exceed MAX_INT_BITS."""
    if isinstance(a, int) and isinstance(b, int) and a and b > 0 and \
            a.bit_length() + b > policy.MAX_INT_BITS:
        raise LimitHit(f"a shift above {policy.MAX_INT_BITS} bits is not allowed")
    return a << b


def _check_percent_format(template: str | bytes) -> None:
    """Refuse ``%`` templates with huge or ``*`` widths and precisions."""
    text = template.decode("latin-1") if isinstance(template, bytes) else template
    for width, precision in _PERCENT_SPEC.findall(text):
        for number in (width, precision):
            if number == "*" or (number and (len(number) > 6 or int(number) > policy.MAX_FORMAT_WIDTH)):
                raise LimitHit(f"'%' format widths above {policy.MAX_FORMAT_WIDTH} (or '*') are not allowed")


def _sb_mod(a: Any, b: Any) -> Any:
    """Apply ``%``: string formatting is checked and charged, numbers pass through."""
    if isinstance(a, _TEXT_TYPES):
        _check_percent_format(a)
        for arg in (b if isinstance(b, tuple) else (b,)):
            _check_decimal(arg)
        result = a % b
        _check_chars(len(result))
        return _charge_result(result)
    return a % b


# --- loops, calls, f-strings, slices -------------------------------------------

def _sb_tick() -> None:
    """Charge one unit of loop or call work."""
    current_budget().charge(1)


def _sb_keep(value: Any) -> Any:
    """Charge a value that C code may retain (comprehension element, lambda result, appended item).

    One unit per 32 bytes beyond the first 64 of its shallow size, so small
    values are free and ``[bin(2**9999) for i in range(10**6)]`` is bounded.
    """
    size = _getsizeof(value)
    if size > 96:
        current_budget().charge((size - 64) >> 5)
    return value


def _sb_ret(value: Any) -> Any:
    """End a lambda call: one unit of call work plus what the result may retain."""
    _sb_keep(value)
    current_budget().charge(1)
    return value


def _sb_star(value: Any) -> Any:
    """Charge ``*value`` in a display or call: one unit per item it unpacks."""
    if not hasattr(value, "__len__"):
        value = list(value)  # items of lazy sources are charged as they are produced
    current_budget().charge(len(value))
    return value


def _sb_dstar(mapping: Any) -> Any:
    """Charge ``**mapping`` in a dict display: one unit per item copied."""
    if hasattr(mapping, "__len__"):
        current_budget().charge(len(mapping))
    return mapping


def _weighted(iterator: Any, budget: Budget, weight: int) -> Any:
    """Yield from ``iterator`` charging ``weight`` units per item (zip tuples, enumerate pairs)."""
    n = 0
    for item in iterator:
        n += weight
        if n >= 64:
            budget.charge(n)
            n = 0
        yield item
    budget.charge(n)


def _counted(iterator: Any, budget: Budget) -> Any:
    """Yield from ``iterator`` charging one unit per item, in batches of 64."""
    n = 0
    for item in iterator:
        n += 1
        if n == 64:
            budget.charge(64)
            n = 0
        yield item
    budget.charge(n)


def _sb_iter(iterable: Any) -> Any:
    """Wrap a loop's iterable so every item costs one unit (budget bound now, not lazily)."""
    return _counted(iter(iterable), current_budget())


def _sb_slice(obj: Any, lower: Any, upper: Any, step: Any) -> Any:
    """Slice and charge the copy."""
    return _charge_result(obj[lower:upper:step])


def _sb_fmtval(value: Any) -> Any:
    """Refuse a value whose f-string formatting could be huge (giant Decimals)."""
    _check_decimal(value)
    return value


def _sb_fstr(text: str) -> str:
    """Cap and charge a finished f-string."""
    _check_chars(len(text))
    return _charge_result(text)
