"""Declare what sandboxed code may touch and how big things may get.

One table for the checker (which refuses code) and the runtime (which caps
it): a name or method that is not listed here cannot be reached. Method and
attribute names are checked by *name*, whatever object they are used on, so
every listed name must be harmless on every value the sandbox can produce
(task data, the exposed classes, builtin functions, iterators, exceptions).
Names starting with ``_`` are never allowed anywhere.
"""
from __future__ import annotations

from typing import Any

# --- size caps (in-process and in the worker) -------------------------------

MAX_STR_CHARS = 10_000_000        # a produced string / bytes (about 10 MB)
MAX_ITEMS = 1_000_000             # a list/tuple built by repetition, concat or extend
MAX_RANGE = 1_000_000             # length of a range()
MAX_INT_BITS = 10_000             # result of *, **, << on integers
MAX_FORMAT_WIDTH = 1_000          # width / precision in f-strings and "%" formatting
MAX_DATE_FORMAT = 1_000           # length of strftime / strptime format and input
MAX_DECIMAL_EXPONENT = 4_300      # Decimal converted to int / formatted in full
MAX_DECIMAL_DIGITS = 1_000        # digits accepted by Decimal(...) from text or a tuple

# Work units: one per loop iteration, per item of a produced container, per
# 8 characters of a produced string. Expressions run in the web process, so
# their budget is small; scripts run in a worker bounded by rlimits as well.
EXPRESSION_WORK_UNITS = 3_000_000
SCRIPT_WORK_UNITS = 50_000_000
CLOCK_CHECK_EVERY = 64            # work units between two CPU-clock reads (~0.5 us each)

MAX_EXPRESSION_CHARS = 20_000
MAX_SCRIPT_CHARS = 200_000
MAX_RESULT_BYTES = 32 * 1024 * 1024   # encoded script result sent back by a worker

# --- settings names and defaults --------------------------------------------

SETTING_DEFAULTS: dict[str, Any] = {
    "BATON_SCRIPT_CPU_SECONDS": 2,
    "BATON_SCRIPT_WALL_SECONDS": 5.0,
    "BATON_SCRIPT_MEMORY_BYTES": 512 * 1024 * 1024,
    "BATON_SCRIPT_POOL_SIZE": 2,
    "BATON_SCRIPT_WORKER_MAX_CALLS": 1000,
}

# --- names ---------------------------------------------------------------------

# Builtins whose *call* is rewritten to a capped helper; as a bare value they
# may only be the base of an attribute (``str.lower``), never passed around,
# so a cap cannot be bypassed through an alias (``f = list; f(big)``).
CONSTRUCTOR_NAMES = frozenset({"str", "list", "tuple", "dict", "set", "int", "Decimal"})

# Builtin names available to user code (see runtime.SAFE_BUILTINS).
SAFE_FUNCTION_NAMES = frozenset({
    "len", "abs", "round", "min", "max", "sum", "sorted", "range", "pow", "divmod",
    "enumerate", "zip", "any", "all", "reversed", "float", "bool", "chr", "ord",
    "bin", "hex", "oct",
}) | CONSTRUCTOR_NAMES
SAFE_CLASS_NAMES = frozenset({"datetime", "date", "timedelta", "timezone", "Decimal"})
EXCEPTION_NAMES = frozenset({
    "Exception", "ArithmeticError", "LookupError", "ValueError", "TypeError",
    "KeyError", "IndexError", "ZeroDivisionError", "AttributeError", "NameError",
    "AssertionError", "OverflowError",
})
BUILTIN_NAMES = SAFE_FUNCTION_NAMES | SAFE_CLASS_NAMES | EXCEPTION_NAMES

# Names refused in any use, with a clear message (they are not reachable
# anyway: the runtime's __builtins__ holds only BUILTIN_NAMES).
FORBIDDEN_NAMES = frozenset({
    "exec", "eval", "compile", "open", "getattr", "setattr", "delattr", "hasattr",
    "globals", "locals", "vars", "dir", "breakpoint", "memoryview", "super",
    "classmethod", "staticmethod", "bytearray", "aiter", "anext", "BaseException",
    "SystemExit", "KeyboardInterrupt", "GeneratorExit",
})
# Builtins that may not be *called*; as plain names they are ordinary task
# data (a form field called "type", "id" or "input" is common).
FORBIDDEN_CALLS = FORBIDDEN_NAMES | frozenset({
    "type", "input", "object", "property", "help", "exit", "quit", "format",
    "isinstance", "issubclass", "callable", "id", "iter", "next", "print", "map",
    "filter", "slice", "repr", "ascii", "hash", "copyright", "credits", "license",
})

# --- methods and attributes -------------------------------------------------

STR_METHODS = frozenset({
    "lower", "upper", "strip", "lstrip", "rstrip", "split", "rsplit", "splitlines",
    "join", "startswith", "endswith", "replace", "title", "capitalize", "casefold",
    "swapcase", "isdigit", "isalpha", "isalnum", "isnumeric", "isdecimal", "isspace",
    "islower", "isupper", "istitle", "find", "rfind", "index", "rindex", "count",
    "partition", "rpartition", "center", "ljust", "rjust", "zfill", "expandtabs",
    "removeprefix", "removesuffix",
})
LIST_METHODS = frozenset({
    "append", "extend", "pop", "insert", "index", "count", "remove", "reverse",
    "sort", "copy", "clear",
})
DICT_METHODS = frozenset({
    "get", "keys", "values", "items", "update", "setdefault", "pop", "popitem",
    "copy", "clear",
})
SET_METHODS = frozenset({
    "add", "discard", "remove", "union", "intersection", "difference",
    "symmetric_difference", "issubset", "issuperset", "isdisjoint", "update",
    "copy", "pop", "clear",
})
DATE_METHODS = frozenset({
    "isoformat", "strftime", "weekday", "isoweekday", "date", "time", "replace",
    "timestamp", "astimezone", "total_seconds", "toordinal", "ctime", "utcoffset",
})
NUMBER_METHODS = frozenset({
    "is_integer", "bit_length", "quantize", "normalize", "to_integral_value",
    "is_nan", "is_zero", "is_signed", "is_finite", "conjugate",
})
# Called on the exposed classes themselves: datetime.now(), date.today() ...
CLASS_METHODS = frozenset({
    "now", "today", "utcnow", "fromisoformat", "strptime", "combine",
    "fromtimestamp", "fromordinal",
})
INSTANCE_METHODS = (STR_METHODS | LIST_METHODS | DICT_METHODS | SET_METHODS
                    | DATE_METHODS | NUMBER_METHODS)
METHODS = INSTANCE_METHODS | CLASS_METHODS

# Methods whose result or retained arguments must be charged, or whose
# arguments must be checked: they may only be *called*, never taken as a value
# (``f = s.replace`` or ``f = list.append`` is refused).
CAPPED_METHODS = frozenset({
    "join", "replace", "center", "ljust", "rjust", "zfill", "expandtabs", "extend",
    "update", "split", "rsplit", "splitlines", "copy", "union", "intersection",
    "difference", "symmetric_difference", "strftime", "strptime", "sort",
    "upper", "lower", "title", "capitalize", "casefold", "swapcase", "strip",
    "lstrip", "rstrip", "removeprefix", "removesuffix", "partition", "rpartition",
    "append", "insert", "add", "setdefault",
})

# Plain (non-call) attributes.
DATA_ATTRIBUTES = frozenset({
    "year", "month", "day", "hour", "minute", "second", "microsecond", "tzinfo",
    "fold", "days", "seconds", "microseconds", "real", "imag", "numerator",
    "denominator", "min", "max", "resolution", "utc",
})
VALUE_ATTRIBUTES = DATA_ATTRIBUTES | (METHODS - CAPPED_METHODS)

# Never, on anything: string formatting with attribute lookups in the template.
FORMAT_METHODS = frozenset({"format", "format_map"})
