"""Run checked code in the current process: expressions here, scripts in a worker.

``evaluate_expression`` is the fast path used by gateway conditions and other
expressions: a cached code object, a fresh globals dict (task data over
``extra``), ``__builtins__`` limited to ``SAFE_BUILTINS``, and a work
budget that bounds loops, produced data and CPU time. ``run_script`` is the
same for multi-statement scripts; the pool's worker processes call it under
rlimits, never the web process.

Errors keep the user's exception type and message (``ScriptFailed``), with a
traceback restricted to the user's own frames.
"""
from __future__ import annotations

import builtins
import datetime as _dt
import traceback
from decimal import Decimal
from types import FunctionType, TracebackType
from typing import Any

from . import caps, checker, constructors, methods, policy
from .errors import LimitHit, SandboxLimitExceeded, SandboxViolation, ScriptFailed

_ITERATOR_RESULT_SKIP = (str, bytes, list, tuple, dict, set, frozenset, range)

# The rewritten code's helpers (user code cannot name them: they start with "_").
HELPERS: dict[str, Any] = {
    name: obj
    for module in (caps, constructors, methods)
    for name, obj in vars(module).items()
    if name.startswith("_sb_") and callable(obj)
}

# Everything user code can reach by name besides task data.
SAFE_BUILTINS: dict[str, Any] = {
    "len": len, "abs": abs, "divmod": divmod,
    "any": any, "all": all, "reversed": reversed, "float": float, "bool": bool,
    "zip": constructors.capped_zip, "enumerate": constructors.capped_enumerate,
    "chr": chr, "ord": ord, "bin": bin, "hex": hex, "oct": oct,
    "round": constructors.capped_round, "min": constructors.capped_min,
    "max": constructors.capped_max, "sum": constructors.capped_sum,
    "sorted": constructors.capped_sorted, "range": constructors.capped_range,
    "pow": constructors.capped_pow,
    # Types: calls are rewritten to the _sb_* constructors; kept for ``str.lower`` etc.
    "str": str, "list": list, "tuple": tuple, "dict": dict, "set": set, "int": int,
    "Decimal": Decimal,
    "datetime": _dt.datetime, "date": _dt.date, "timedelta": _dt.timedelta,
    "timezone": _dt.timezone,
    **{name: getattr(builtins, name) for name in policy.EXCEPTION_NAMES},
    **HELPERS,
}
if set(SAFE_BUILTINS) - set(HELPERS) != policy.BUILTIN_NAMES:  # pragma: no cover
    raise ImportError("sandbox policy and builtins table disagree")


def user_traceback(exc: BaseException, filename: str, source: str) -> tuple[str, int]:
    """Return (traceback text of the user's frames only, innermost user line)."""
    lines = source.splitlines()
    out = ["Traceback (most recent call last):"]
    last_line, previous, repeats = 0, None, 0
    tb: TracebackType | None = exc.__traceback__
    for frame, lineno in traceback.walk_tb(tb):
        if frame.f_code.co_filename != filename:
            continue
        last_line = lineno
        entry = f'  File "{filename}", line {lineno}, in {frame.f_code.co_name}'
        if 1 <= lineno <= len(lines) and lines[lineno - 1].strip():
            entry += f"\n    {lines[lineno - 1].strip()}"
        repeats = repeats + 1 if entry == previous else 0
        previous = entry
        if repeats < 3:  # collapse deep recursion as Python does
            out.append(entry)
        elif repeats == 3:
            out.append("  [previous frame repeated]")
    message = str(exc)
    out.append(f"{type(exc).__name__}: {message}" if message else type(exc).__name__)
    return "\n".join(out), last_line


def failure(exc: BaseException, mode: str, source: str, keep_original: bool) -> ScriptFailed:
    """Build the ScriptFailed for an exception raised by user code."""
    filename = checker.EXPRESSION_FILENAME if mode == checker.EXPRESSION else checker.SCRIPT_FILENAME
    text, line = user_traceback(exc, filename, checker.normalised_source(source, mode))
    return ScriptFailed(type(exc).__name__, str(exc), text, line, exc if keep_original else None)


def compiled_or_refuse(source: str, mode: str) -> checker.Compiled:
    """Return the cached compiled code, or raise SandboxViolation listing the problems."""
    compiled = checker.compile_checked(source, mode)
    if compiled.code is None:
        raise SandboxViolation(compiled.problems)
    return compiled


def _materialise(result: Any) -> Any:
    """Turn a lazy result into a list under the budget; refuse returning a user function.

    A generator returned by an expression would otherwise run later, outside
    the budget; a user lambda called later would too.
    """
    if isinstance(result, FunctionType):
        raise TypeError("an expression cannot return a function")
    if not isinstance(result, _ITERATOR_RESULT_SKIP) and hasattr(type(result), "__next__"):
        return constructors._sb_list(result)
    return result


def evaluate_expression(source: str, context: dict, extra: dict | None = None) -> Any:
    """Evaluate one expression in-process; microseconds once the source is cached.

    Task data (``context``) wins over ``extra`` for the same name, as in
    SpiffWorkflow. Raises SandboxViolation, SandboxLimitExceeded or
    ScriptFailed (with ``original`` set to the user's exception).
    """
    code = compiled_or_refuse(source, checker.EXPRESSION).code
    env = dict(extra) if extra else {}
    env.update(context)
    env["__builtins__"] = SAFE_BUILTINS
    previous = caps.activate(caps.Budget(policy.EXPRESSION_WORK_UNITS, None, "expression"))
    try:
        return _materialise(eval(code, env))  # noqa: S307 - checked, rewritten, restricted builtins
    except LimitHit as hit:
        raise SandboxLimitExceeded(hit.message) from None
    except MemoryError:
        raise SandboxLimitExceeded("expression exceeded the memory limit") from None
    except Exception as exc:  # noqa: BLE001 - the user's own error, reported as such
        raise failure(exc, checker.EXPRESSION, source, keep_original=True) from exc
    finally:
        caps.restore(previous)


def run_script(source: str, context: dict, extra: dict | None, cpu_seconds: float | None,
               work_units: int = policy.SCRIPT_WORK_UNITS) -> dict:
    """Execute a script and return its resulting variables (call only in a worker).

    Variables whose names start with ``_``, names from ``extra`` and callables
    (functions, classes) are left out of the result, as SpiffWorkflow does.
    """
    code = compiled_or_refuse(source, checker.SCRIPT).code
    env = dict(context)
    if extra:
        env.update(extra)
    env["__builtins__"] = SAFE_BUILTINS
    previous = caps.activate(caps.Budget(work_units, cpu_seconds, "script"))
    try:
        exec(code, env)  # noqa: S102 - checked, rewritten, restricted builtins
    except LimitHit as hit:
        raise SandboxLimitExceeded(hit.message) from None
    except MemoryError:
        raise SandboxLimitExceeded("script exceeded the memory limit") from None
    except Exception as exc:  # noqa: BLE001 - the user's own error, reported as such
        raise failure(exc, checker.SCRIPT, source, keep_original=False) from None
    finally:
        caps.restore(previous)
    skip = extra or {}
    return {name: value for name, value in env.items()
            if not name.startswith("_") and name not in skip and not callable(value)}
