"""Provide the capped helpers and the only builtins sandboxed code can reach.

In-process code cannot be interrupted by a signal while C code runs
(``sum(range(10**12))`` ignores SIGALRM), so the defence is to never start an
operation that is too big: every operation that can multiply size or time
(``range``, ``*``, ``**``, ``<<``, ``join``, ``replace``, constructors,
slices ...) checks its result size *before* allocating where it can, and
charges what it produced to a per-run work ``Budget``. Loop iterations,
function calls and lambda calls charge one unit each, and every
``CLOCK_CHECK_EVERY`` units the budget reads the thread's CPU clock, so a run
ends within about its CPU limit plus one bounded C operation.

Invariant: helpers never expose a private attribute and never call anything
the checker would refuse; ``LimitHit`` is a ``BaseException`` so user
``try/except`` cannot swallow it.
"""
from __future__ import annotations

import builtins
import datetime as _dt
import math
import re
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from . import policy
from .errors import LimitHit

_state = threading.local()
_SEQ_TYPES = (str, bytes, list, tuple)
_TEXT_TYPES = (str, bytes)
_CONTAINERS = (list, tuple, dict, set, frozenset)
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")


class Budget:
    """Count work units for one run and enforce its CPU-time limit.

    ``cpu_seconds`` None means "read BATON_SCRIPT_CPU_SECONDS at the first
    clock check", so trivial expressions never pay for a settings lookup or a
    clock read (~0.5 us each).
    """

    __slots__ = ("left", "pending", "deadline", "cpu_seconds", "what")

    def __init__(self, units: int, cpu_seconds: float | None, what: str) -> None:
        self.left = units
        self.pending = 0
        self.deadline: float | None = None
        self.cpu_seconds = cpu_seconds
        self.what = what

    def charge(self, units: int) -> None:
        """Spend ``units``; raise LimitHit when the work or CPU budget is gone."""
        self.left -= units
        if self.left < 0:
            raise LimitHit(f"{self.what} exceeded the work limit (too many loop iterations "
                           "or too much data produced)")
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
                raise LimitHit(f"{self.what} exceeded the {self.cpu_seconds:g} s CPU time limit")


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
    if isinstance(a, _SEQ_TYPES) and isinstance(b, _SEQ_TYPES):
        _check_size(type(a), len(a) + len(b))
        return _charge_result(a + b)
    return a + b


def _repeat(seq: Any, times: int) -> Any:
    _check_size(type(seq), len(seq) * max(times, 0))
    return _charge_result(seq * times)


def _sb_mul(a: Any, b: Any) -> Any:
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
    if isinstance(a, int) and isinstance(b, int) and b > 1 and a not in (0, 1, -1):
        if b * math.log2(abs(a)) > policy.MAX_INT_BITS:
            raise LimitHit(f"a power above {policy.MAX_INT_BITS} bits is not allowed")
    return a ** b


def _sb_lshift(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int) and a and b > 0 and \
            a.bit_length() + b > policy.MAX_INT_BITS:
        raise LimitHit(f"a shift above {policy.MAX_INT_BITS} bits is not allowed")
    return a << b


def _check_percent_format(template: str | bytes) -> None:
    text = template.decode("latin-1") if isinstance(template, bytes) else template
    for width, precision in _PERCENT_SPEC.findall(text):
        for number in (width, precision):
            if number == "*" or (number and (len(number) > 6 or int(number) > policy.MAX_FORMAT_WIDTH)):
                raise LimitHit(f"'%' format widths above {policy.MAX_FORMAT_WIDTH} (or '*') are not allowed")


def _sb_mod(a: Any, b: Any) -> Any:
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
    current_budget().charge(1)


def _counted(iterator: Any, budget: Budget) -> Any:
    n = 0
    for item in iterator:
        n += 1
        if n == 256:
            budget.charge(256)
            n = 0
        yield item
    budget.charge(n)


def _sb_iter(iterable: Any) -> Any:
    """Wrap a loop's iterable so every item costs one unit (budget bound now, not lazily)."""
    return _counted(iter(iterable), current_budget())


def _sb_slice(obj: Any, lower: Any, upper: Any, step: Any) -> Any:
    return _charge_result(obj[lower:upper:step])


def _sb_fmtval(value: Any) -> Any:
    _check_decimal(value)
    return value


def _sb_fstr(text: str) -> str:
    _check_chars(len(text))
    return _charge_result(text)


# --- methods ----------------------------------------------------------------------

def _m_join(obj: Any, name: str, args: tuple, kwargs: dict) -> Any:
    if not isinstance(obj, _TEXT_TYPES) or len(args) != 1 or kwargs:
        return obj.join(*args, **kwargs)
    items = args[0] if isinstance(args[0], (list, tuple)) else _sb_list(args[0])
    try:
        total = sum(map(len, items)) + len(obj) * max(len(items) - 1, 0)
    except TypeError:
        return obj.join(items)  # raises the natural TypeError
    _check_chars(total)
    return _charge_result(obj.join(items))


def _m_replace(obj: Any, name: str, args: tuple, kwargs: dict) -> Any:
    if isinstance(obj, _TEXT_TYPES) and len(args) >= 2:
        old, new = args[0], args[1]
        count = args[2] if len(args) > 2 else kwargs.get("count", -1)
        try:
            found = obj.count(old) if len(old) else len(obj) + 1
            if isinstance(count, int) and count >= 0:
                found = min(found, count)
            _check_chars(len(obj) + found * (len(new) - len(old)))
        except TypeError:
            pass  # the real call below raises the natural error
    return _charge_result(obj.replace(*args, **kwargs))


def _m_width(obj: Any, name: str, args: tuple, kwargs: dict) -> Any:
    width = args[0] if args else kwargs.get("width")
    if isinstance(width, int):
        _check_chars(width)
    return _charge_result(getattr(obj, name)(*args, **kwargs))


def _m_expandtabs(obj: Any, name: str, args: tuple, kwargs: dict) -> Any:
    tabsize = args[0] if args else kwargs.get("tabsize", 8)
    if isinstance(obj, _TEXT_TYPES) and isinstance(tabsize, int):
        tab = "\t" if isinstance(obj, str) else b"\t"
        _check_chars(len(obj) + obj.count(tab) * max(tabsize, 0))  # type: ignore[arg-type]
    return _charge_result(obj.expandtabs(*args, **kwargs))


def _m_grow(obj: Any, name: str, args: tuple, kwargs: dict) -> Any:
    if isinstance(obj, (list, dict, set)):
        args = tuple(a if hasattr(a, "__len__") else _sb_list(a) for a in args)
        added = sum(len(a) for a in args) + len(kwargs)
        _check_size(type(obj), len(obj) + added)
        current_budget().charge(added)
    return getattr(obj, name)(*args, **kwargs)


def _m_dateformat(obj: Any, name: str, args: tuple, kwargs: dict) -> Any:
    for arg in (*args, *kwargs.values()):
        if isinstance(arg, str) and len(arg) > policy.MAX_DATE_FORMAT:
            raise LimitHit(f"date formats longer than {policy.MAX_DATE_FORMAT} characters are not allowed")
    return getattr(obj, name)(*args, **kwargs)


def _m_sort(obj: Any, name: str, args: tuple, kwargs: dict) -> Any:
    if isinstance(obj, list):
        current_budget().charge(len(obj))
    return obj.sort(*args, **kwargs)


def _m_charged(obj: Any, name: str, args: tuple, kwargs: dict) -> Any:
    return _charge_result(getattr(obj, name)(*args, **kwargs))


_METHOD_HANDLERS: dict[str, Callable[[Any, str, tuple, dict], Any]] = {
    **{name: _m_charged for name in policy.CAPPED_METHODS},
    "join": _m_join, "replace": _m_replace, "center": _m_width, "ljust": _m_width,
    "rjust": _m_width, "zfill": _m_width, "expandtabs": _m_expandtabs, "extend": _m_grow,
    "update": _m_grow, "strftime": _m_dateformat, "strptime": _m_dateformat, "sort": _m_sort,
}
_EXPOSED_CLASSES = (_dt.datetime, _dt.date, _dt.timedelta, _dt.timezone, Decimal)


def _sb_call(obj: Any, name: str, /, *args: Any, **kwargs: Any) -> Any:
    """Call the whitelisted method ``name`` on ``obj`` through its cap, if any."""
    if name not in policy.METHODS or name.startswith("_"):
        raise TypeError(f"calls to method '{name}' are not allowed")
    if isinstance(obj, type):
        if name in policy.CLASS_METHODS and obj in _EXPOSED_CLASSES:
            pass
        elif name in policy.INSTANCE_METHODS and args and isinstance(args[0], obj):
            obj, args = args[0], args[1:]  # unbound form: str.lower(x)
        else:
            raise TypeError(f"{obj.__name__}.{name}() is not allowed")
    handler = _METHOD_HANDLERS.get(name)
    if handler is not None:
        return handler(obj, name, args, kwargs)
    return getattr(obj, name)(*args, **kwargs)


# --- builtins ---------------------------------------------------------------------

def _sb_list(*args: Any, **kwargs: Any) -> list:
    return _charge_result(list(*args, **kwargs))


def _sb_tuple(*args: Any, **kwargs: Any) -> tuple:
    return _charge_result(tuple(*args, **kwargs))


def _sb_set(*args: Any, **kwargs: Any) -> set:
    return _charge_result(set(*args, **kwargs))


def _sb_dict(*args: Any, **kwargs: Any) -> dict:
    return _charge_result(dict(*args, **kwargs))


def _sb_str(*args: Any, **kwargs: Any) -> str:
    if args:
        _check_decimal(args[0])
    result = str(*args, **kwargs)
    _check_chars(len(result))
    return _charge_result(result)


def _sb_int(*args: Any, **kwargs: Any) -> int:
    if args:
        _check_decimal(args[0])
    return int(*args, **kwargs)


def _charge_len(value: Any) -> None:
    if isinstance(value, (*_SEQ_TYPES, dict, set, frozenset, range)):
        current_budget().charge(len(value))


def capped_range(*args: Any) -> range:
    """Build a range of at most MAX_RANGE items (its length is O(1) to compute)."""
    result = range(*args)
    try:
        size = len(result)
    except OverflowError:
        size = policy.MAX_RANGE + 1
    if size > policy.MAX_RANGE:
        raise LimitHit(f"range() of more than {policy.MAX_RANGE} items is not allowed")
    return result


def capped_sum(iterable: Any, /, start: Any = 0) -> Any:
    """Sum numbers only (summing lists is quadratic), charging the input's length."""
    if not isinstance(start, (int, float, Decimal, _dt.timedelta)):
        raise TypeError("sum() can only add numbers and timedeltas here")
    _charge_len(iterable)
    return sum(iterable, start)


def capped_min(*args: Any, **kwargs: Any) -> Any:
    if len(args) == 1:
        _charge_len(args[0])
    return min(*args, **kwargs)


def capped_max(*args: Any, **kwargs: Any) -> Any:
    if len(args) == 1:
        _charge_len(args[0])
    return max(*args, **kwargs)


def capped_sorted(iterable: Any, /, **kwargs: Any) -> list:
    return _charge_result(sorted(iterable, **kwargs))


def capped_pow(base: Any, exp: Any, /) -> Any:
    return _sb_pow(base, exp)


def capped_round(number: Any, ndigits: Any = None) -> Any:
    _check_decimal(number)
    if ndigits is None:
        return round(number)
    if isinstance(ndigits, int) and abs(ndigits) > policy.MAX_FORMAT_WIDTH:
        raise LimitHit(f"round() to more than {policy.MAX_FORMAT_WIDTH} digits is not allowed")
    return round(number, ndigits)


HELPERS: dict[str, Any] = {
    name: obj for name, obj in globals().items()
    if name.startswith("_sb_") and callable(obj)
}

SAFE_BUILTINS: dict[str, Any] = {
    "len": len, "abs": abs, "round": capped_round, "min": capped_min, "max": capped_max,
    "sum": capped_sum, "sorted": capped_sorted, "range": capped_range, "pow": capped_pow,
    "divmod": divmod, "enumerate": enumerate, "zip": zip, "any": any, "all": all,
    "reversed": reversed, "float": float, "bool": bool, "chr": chr, "ord": ord,
    "bin": bin, "hex": hex, "oct": oct,
    "str": str, "list": list, "tuple": tuple, "dict": dict, "set": set, "int": int,
    "datetime": _dt.datetime, "date": _dt.date, "timedelta": _dt.timedelta,
    "timezone": _dt.timezone, "Decimal": Decimal,
    **{name: getattr(builtins, name) for name in policy.EXCEPTION_NAMES},
    **HELPERS,
}
assert set(SAFE_BUILTINS) - set(HELPERS) == policy.BUILTIN_NAMES, "policy and runtime disagree"
