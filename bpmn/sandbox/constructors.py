"""Provide capped versions of the builtins that build or consume containers.

``list(x)``, ``dict(x)``, ``str(x)`` ... are rewritten by the checker to the
``_sb_*`` constructors here, which charge what they built to the run's
budget; sets and dicts built from a sequence are filled in chunks so a
hash-collision input cannot turn one C call into hours. ``range``, ``sum``,
``min``, ``max``, ``sorted``, ``pow`` and ``round`` are replaced outright in
the builtins table by the ``capped_*`` functions.
"""
from __future__ import annotations

import datetime as _dt
from decimal import Decimal
from typing import Any

from . import policy
from .caps import (_SEQ_TYPES, _charge_result, _check_chars, _check_decimal, _sb_pow, _weighted,
                   current_budget)
from .errors import LimitHit


def _sb_list(*args: Any, **kwargs: Any) -> list:
    """Build a list and charge its length."""
    return _charge_result(list(*args, **kwargs))


def _sb_tuple(*args: Any, **kwargs: Any) -> tuple:
    """Build a tuple and charge its length."""
    return _charge_result(tuple(*args, **kwargs))


_HASH_DIRECT = 1024   # below this many items a hash table is built in one C call
_HASH_CHUNK = 256


def _hash_build(kind: type, items: list | tuple) -> Any:
    """Build a set/dict ``_HASH_CHUNK`` items at a time, reading the CPU clock in between.

    One C call building a table from a list of colliding keys
    (``[i * (2**61 - 1) for i in range(10**6)]``) is quadratic and cannot be
    interrupted; in chunks, the run stops within its CPU limit.
    """
    result = kind()
    budget = current_budget()
    for start in range(0, len(items), _HASH_CHUNK):
        result.update(items[start:start + _HASH_CHUNK])
        budget.charge(_HASH_CHUNK)
    return result


def _sb_set(*args: Any, **kwargs: Any) -> set:
    """Build a set, in chunks when large, and charge its size."""
    if len(args) != 1 or kwargs or isinstance(args[0], (set, frozenset)):
        return _charge_result(set(*args, **kwargs))  # set-to-set copies do not rehash
    items = args[0] if isinstance(args[0], (list, tuple)) else list(args[0])
    if len(items) <= _HASH_DIRECT:
        return _charge_result(set(items))
    return _hash_build(set, items)


def _sb_dict(*args: Any, **kwargs: Any) -> dict:
    """Build a dict, in chunks when large, and charge its size."""
    if len(args) == 1 and not isinstance(args[0], dict):  # dict copies clone the table
        source = args[0]
        pairs = list(source.items()) if hasattr(source, "items") else list(source)
        if len(pairs) > _HASH_DIRECT:
            result = _hash_build(dict, pairs)
            result.update(kwargs)
            return result
        args = (pairs,)
    return _charge_result(dict(*args, **kwargs))


def _sb_str(*args: Any, **kwargs: Any) -> str:
    """Convert to str, capping and charging the result."""
    if args:
        _check_decimal(args[0])
    result = str(*args, **kwargs)
    _check_chars(len(result))
    return _charge_result(result)


def _sb_int(*args: Any, **kwargs: Any) -> int:
    """Convert to int, refusing Decimals whose expansion would be huge."""
    if args:
        _check_decimal(args[0])
    return int(*args, **kwargs)


def _sb_Decimal(*args: Any, **kwargs: Any) -> Decimal:  # noqa: N802 - named after the class
    """Build a Decimal of at most MAX_DECIMAL_DIGITS digits (huge coefficients make arithmetic slow)."""
    value = args[0] if args else kwargs.get("value")
    digits = len(value) if isinstance(value, str) else (
        len(value[1]) if isinstance(value, tuple) and len(value) == 3 and isinstance(value[1], tuple) else 0)
    if digits > policy.MAX_DECIMAL_DIGITS:
        raise LimitHit(f"Decimal() of more than {policy.MAX_DECIMAL_DIGITS} digits is not allowed")
    return Decimal(*args, **kwargs)


def _charge_len(value: Any) -> None:
    """Charge the length of a sized input a builtin will walk."""
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
    """min(), charging the length of a single iterable argument."""
    if len(args) == 1:
        _charge_len(args[0])
    return min(*args, **kwargs)


def capped_max(*args: Any, **kwargs: Any) -> Any:
    """max(), charging the length of a single iterable argument."""
    if len(args) == 1:
        _charge_len(args[0])
    return max(*args, **kwargs)


def capped_sorted(iterable: Any, /, **kwargs: Any) -> list:
    """sorted(), charging the length of the result."""
    return _charge_result(sorted(iterable, **kwargs))


def capped_pow(base: Any, exp: Any, /) -> Any:
    """pow() with exactly two arguments, capped like ``**``."""
    return _sb_pow(base, exp)


def capped_round(number: Any, ndigits: Any = None) -> Any:
    """round(), refusing huge Decimals and digit counts beyond MAX_FORMAT_WIDTH."""
    _check_decimal(number)
    if ndigits is None:
        return round(number)
    if isinstance(ndigits, int) and abs(ndigits) > policy.MAX_FORMAT_WIDTH:
        raise LimitHit(f"round() to more than {policy.MAX_FORMAT_WIDTH} digits is not allowed")
    return round(number, ndigits)


def capped_zip(*iterables: Any, strict: bool = False) -> Any:
    """zip() whose tuples are charged by width (``zip(*[big] * 1000)`` builds 1000-tuples)."""
    return _weighted(zip(*iterables, strict=strict), current_budget(), max(len(iterables), 1))


def capped_enumerate(iterable: Any, start: int = 0) -> Any:
    """enumerate() whose pairs are charged."""
    return _weighted(enumerate(iterable, start), current_budget(), 2)
