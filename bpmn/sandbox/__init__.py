"""Run user expressions and scripts from BPMN/DMN as a restricted Python subset.

Every condition, script, timer, multi-instance and DMN expression goes through
this package (see DESIGN.md, "Expressions and scripts are code: sandbox
them"). Public API:

- ``check_expression(source)`` / ``check_script(source)``: plain-English
  problems, ``[]`` when the code is allowed (for upload-time validation).
- ``evaluate(source, context, extra=None)``: an expression, in-process, in
  microseconds; names resolve to ``context`` (task data) over ``extra``.
- ``execute(source, context, extra=None)``: a script, in a warm worker
  process under rlimits; ``context`` is replaced in place by the script's
  resulting variables (minus ``extra`` names, ``_`` names and functions).

The allowed subset
------------------
Expressions: literals, names, arithmetic, comparisons, boolean logic,
conditional expressions, subscripts and slices, comprehensions, f-strings
(constant format specs, widths up to 1000), lambdas, ``:=``, calls to the safe
builtins (``len str int float bool abs round min max sum sorted range list
dict set tuple enumerate zip any all reversed divmod pow(2 args) chr ord bin
hex oct``), the classes ``datetime date timedelta timezone Decimal`` (e.g.
``datetime.now()``, ``timedelta(days=2)``, ``date.today()``) and whitelisted
methods (str, list, dict, set, date and number methods; see ``policy``).
Scripts add: assignment (also augmented), ``del``, ``if``/``for``/``while``
with ``break``/``continue``/``else``, ``def`` of plain helper functions (no
decorators), ``return``, ``assert``, ``raise``, and ``try/except/else/finally``
with named exception types (``Exception``, ``ValueError``, ``KeyError`` ...).

Refused: imports, any name or attribute starting with ``_``, the names
``exec eval compile open getattr setattr delattr hasattr globals locals vars
dir breakpoint memoryview super ...`` in any use, calls to ``type input
object print isinstance id iter next map filter repr format ...`` (as plain
names these are just task data, e.g. a field called ``type``), unlisted
methods or attributes (``gi_frame``, ``f_globals``, ``mro`` ...),
``str.format`` and ``format_map``, computed f-string format specs,
``class``, ``with``, ``global``/``nonlocal``, ``yield``, ``async``, ``match``,
bare ``except:``, decorators, assigning attributes, defining functions with
builtin names, rebinding ``str list dict set tuple int Decimal`` or using
them (or size-sensitive methods such as ``s.replace``, ``s.upper``,
``l.append``) as values rather than calling them: write
``key=lambda s: s.lower()``, not ``key=str.lower``.

Limits
------
Strings built by the code are capped at 10 MB, repeated/concatenated
sequences at 1M items, ``range`` at 1M items, integers from ``* ** <<`` at
10k bits, f-string / ``%`` widths at 1000, ``Decimal(...)`` at 1000 digits;
loop iterations, calls and produced or retained data share a work budget
(3M units for an expression, 50M for a script), and the run stops after
BATON_SCRIPT_CPU_SECONDS of CPU time (read on the running thread's clock).
Scripts also run in a worker process under RLIMIT_AS
(BATON_SCRIPT_MEMORY_BYTES), RLIMIT_CPU and a wall-clock kill
(BATON_SCRIPT_WALL_SECONDS); the pool has BATON_SCRIPT_POOL_SIZE workers,
each recycled after BATON_SCRIPT_WORKER_MAX_CALLS scripts.

Errors: ``SandboxViolation`` (refused; ``.problems``), ``SandboxLimitExceeded``
(a cap, CPU, memory or wall-clock limit), ``ScriptFailed`` (the user's own
exception: ``.error_type``, ``.message``, ``.traceback_text``, ``.line``, and
``.original`` for in-process expressions), all ``SandboxError``.
"""
from __future__ import annotations

from typing import Any

from . import checker, codec, runtime
from .config import setting
from .errors import SandboxError, SandboxLimitExceeded, SandboxViolation, ScriptFailed
from .pool import configure_pool, get_pool, shutdown_pool

__all__ = [
    "SandboxError", "SandboxViolation", "SandboxLimitExceeded", "ScriptFailed",
    "check_expression", "check_script", "evaluate", "execute",
    "warm_up", "configure_pool", "shutdown_pool",
]


def check_expression(source: str) -> list[str]:
    """Return why ``source`` is not an allowed expression ([] when it is). Cached."""
    return checker.compile_checked(source, checker.EXPRESSION).problems


def check_script(source: str) -> list[str]:
    """Return why ``source`` is not an allowed script ([] when it is). Cached."""
    return checker.compile_checked(source, checker.SCRIPT).problems


def evaluate(source: str, context: dict, extra: dict | None = None) -> Any:
    """Evaluate an expression in-process under the caps; ~1-2 us for a simple condition.

    Raises SandboxViolation, SandboxLimitExceeded or ScriptFailed.
    """
    return runtime.evaluate_expression(source, context, extra)


def execute(source: str, context: dict, extra: dict | None = None, *,
            wall_seconds: float | None = None, cpu_seconds: float | None = None) -> None:
    """Run a script in a sandbox worker and replace ``context``'s contents with its variables.

    ``context`` and ``extra`` must hold JSON-like data (plus tuples, sets,
    datetimes, dates, times, timedeltas, Decimals). ``extra`` names are visible
    to the script but not returned and may not clash with ``context`` names.
    Limits default to BATON_SCRIPT_WALL_SECONDS / BATON_SCRIPT_CPU_SECONDS. On
    any error ``context`` is left unchanged. Costs ~0.1 ms once the pool is warm.
    """
    runtime.compiled_or_refuse(source, checker.SCRIPT)  # refuse before touching a worker
    extra = extra or {}
    clash = sorted(set(extra).intersection(context))
    if clash:
        raise SandboxError(f"task data overwrites names provided to the script: {', '.join(clash)}")
    try:
        request = {"src": source, "ctx": codec.encode_vars(context), "extra": codec.encode_vars(extra)}
    except codec.Unencodable as exc:
        raise SandboxError(f"cannot pass task data to the script: {exc}") from None
    wall = float(wall_seconds if wall_seconds is not None else setting("BATON_SCRIPT_WALL_SECONDS"))
    cpu = float(cpu_seconds if cpu_seconds is not None else setting("BATON_SCRIPT_CPU_SECONDS"))
    request["cpu"] = cpu
    variables = get_pool().run(request, wall, cpu)
    context.clear()
    context.update(variables)


def warm_up() -> None:
    """Start the worker processes now (e.g. from AppConfig.ready) instead of on first use."""
    get_pool().start()
