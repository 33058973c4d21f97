"""Call whitelisted methods through their caps (the ``_sb_call`` helper).

The checker allows a method by *name*; this module decides what the call may
cost: ``join``/``replace``/``ljust``... check the size of the string they
would build before building it, ``extend``/``update`` the size of the grown
container, set operations build their operands in chunks (hash-collision
safe), and copying methods (``upper``, ``split``, ``copy`` ...) charge what
they produced. Calls on the exposed classes are limited to their class
methods (``datetime.now()``) or the unbound form of an instance method
(``str.lower(x)``).
"""
from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from . import policy
from .caps import _TEXT_TYPES, _charge_result, _check_chars, _check_size, _sb_keep, current_budget
from .constructors import _sb_dict, _sb_list, _sb_set
from .errors import LimitHit


def _m_join(obj: Any, name: str, args: tuple, kwargs: dict) -> Any:
    """Join after checking the total length (materialising lazy input under charge)."""
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
    """Replace after estimating the result length from the number of matches."""
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
    """Pad (ljust/rjust/center/zfill) only up to the string cap."""
    width = args[0] if args else kwargs.get("width")
    if isinstance(width, int):
        _check_chars(width)
    return _charge_result(getattr(obj, name)(*args, **kwargs))


def _m_expandtabs(obj: Any, name: str, args: tuple, kwargs: dict) -> Any:
    """Expand tabs only if the result stays under the string cap."""
    tabsize = args[0] if args else kwargs.get("tabsize", 8)
    if isinstance(obj, _TEXT_TYPES) and isinstance(tabsize, int):
        tab = "\t" if isinstance(obj, str) else b"\t"
        _check_chars(len(obj) + obj.count(tab) * max(tabsize, 0))  # type: ignore[arg-type]
    return _charge_result(obj.expandtabs(*args, **kwargs))


def _m_grow(obj: Any, name: str, args: tuple, kwargs: dict) -> Any:
    """Extend/update only up to the item cap, charging what is added."""
    if isinstance(obj, set):
        args = tuple(_sb_set(a) for a in args)
    elif isinstance(obj, dict) and args:
        args = (_sb_dict(args[0]),) + args[1:]
    if isinstance(obj, (list, dict, set)):
        args = tuple(a if hasattr(a, "__len__") else _sb_list(a) for a in args)
        added = sum(len(a) for a in args) + len(kwargs)
        _check_size(type(obj), len(obj) + added)
        current_budget().charge(added)
    return getattr(obj, name)(*args, **kwargs)


def _m_setop(obj: Any, name: str, args: tuple, kwargs: dict) -> Any:
    """Run a set operation with its operands built as sets in chunks."""
    if isinstance(obj, (set, frozenset)):
        args = tuple(a if isinstance(a, (set, frozenset)) else _sb_set(a) for a in args)
    return _charge_result(getattr(obj, name)(*args, **kwargs))


def _m_dateformat(obj: Any, name: str, args: tuple, kwargs: dict) -> Any:
    """Format or parse dates only with short formats and inputs."""
    for arg in (*args, *kwargs.values()):
        if isinstance(arg, str) and len(arg) > policy.MAX_DATE_FORMAT:
            raise LimitHit(f"date formats longer than {policy.MAX_DATE_FORMAT} characters are not allowed")
    return getattr(obj, name)(*args, **kwargs)


def _m_sort(obj: Any, name: str, args: tuple, kwargs: dict) -> Any:
    """Sort in place, charging the length."""
    if isinstance(obj, list):
        current_budget().charge(len(obj))
    return obj.sort(*args, **kwargs)


def _m_keep(obj: Any, name: str, args: tuple, kwargs: dict) -> Any:
    """append/insert/add/setdefault: the container retains the arguments, so charge them."""
    for arg in args:
        _sb_keep(arg)
    current_budget().charge(1)
    return getattr(obj, name)(*args, **kwargs)


def _m_charged(obj: Any, name: str, args: tuple, kwargs: dict) -> Any:
    """Call a copying method and charge what it produced."""
    return _charge_result(getattr(obj, name)(*args, **kwargs))


_METHOD_HANDLERS: dict[str, Callable[[Any, str, tuple, dict], Any]] = {
    **{name: _m_charged for name in policy.CAPPED_METHODS},
    "join": _m_join, "replace": _m_replace, "center": _m_width, "ljust": _m_width,
    "rjust": _m_width, "zfill": _m_width, "expandtabs": _m_expandtabs, "extend": _m_grow,
    "append": _m_keep, "insert": _m_keep, "add": _m_keep, "setdefault": _m_keep,
    "update": _m_grow, "union": _m_setop, "intersection": _m_setop, "difference": _m_setop,
    "symmetric_difference": _m_setop, "issubset": _m_setop, "issuperset": _m_setop,
    "isdisjoint": _m_setop, "strftime": _m_dateformat, "strptime": _m_dateformat, "sort": _m_sort,
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
