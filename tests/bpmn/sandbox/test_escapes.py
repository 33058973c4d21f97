"""S1 and S2: code that reaches the OS or escapes the subset is refused, 100%.

Every escape is tried as an expression (``check_expression`` and
``evaluate``) and, where it parses as one, as a script (``check_script`` and
``execute``); refusal must happen before anything runs, so a marker file
written by the payload never appears.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from bpmn import sandbox
from bpmn.sandbox import checker, methods, runtime

from .conftest import assert_pool_healthy

# Known escapes (S2). Each is a complete expression.
ESCAPES = [
    "().__class__.__base__.__subclasses__()",
    "().__class__.__bases__[0].__subclasses__()",
    "x.__globals__",
    "getattr(x, '__cl' + 'ass__')",
    "getattr",
    "type(x)",
    "type(x).__mro__",
    "'{0.__class__}'.format(1)",
    "'{.__class__.__mro__}'.format(x)",
    "'{0.__class__}'.format_map(x)",
    "f'{x.__class__}'",
    "f'{x!r:{y}}'",
    "[c for c in ().__class__.__bases__]",
    "(lambda: 0).__code__",
    "(lambda: 0).__globals__",
    "(lambda: 0).__code__.co_consts",
    "datetime._os",
    "datetime.now.__self__",
    "date.__module__",
    "timedelta.__dict__",
    "Decimal.__new__",
    "sorted.__self__",
    "[].pop.__self__",
    "(1).__class__",
    "vars()",
    "globals()",
    "locals()",
    "dir()",
    "eval('1')",
    "exec('1')",
    "compile('1', 'x', 'eval')",
    "breakpoint()",
    "setattr(x, 'a', 1)",
    "delattr(x, 'a')",
    "hasattr(x, 'a')",
    "(x for x in [1]).gi_frame",
    "(x for x in [1]).gi_frame.f_back.f_globals",
    "(x for x in [1]).gi_code",
    "__builtins__",
    "__builtins__['open']",
    "__import__('os')",
    "__loader__",
    "str.mro()",
    "ValueError().__traceback__",
    "ValueError('x').with_traceback(None)",
    "timezone.utc.__reduce__()",
    "memoryview(b'x')",
    "super()",
    "object()",
    "input()",
    "open('/etc/passwd')",
    "print(1)",
    "x.items().mapping",
    "(_ := 1)",
    "[x for _x in [1]]",
    "lambda _a: 0",
]

# Script-only constructs that must be refused.
SCRIPT_ESCAPES = [
    "import os",
    "import os as o\no.system('true')",
    "from os import system",
    "class A:\n    pass",
    "global x\nx = 1",
    "try:\n    x = 1\nexcept:\n    pass",
    "with x:\n    pass",
    "def f():\n    yield 1",
    "@staticmethod\ndef f():\n    return 1",
    "x.y = 1",
    "del x.y",
    "def _f():\n    return 1",
    "def f(_a):\n    return 1",
    "async def f():\n    return 1",
    "match x:\n    case 1:\n        pass",
    "x: int = 1",
    "list = [1]",
    "f = list",
    "f = 'a'.replace",
    "key = str.lower",
    "def f():\n    nonlocal x",
    "try:\n    pass\nexcept ValueError as _e:\n    pass",
]


@pytest.mark.parametrize("source", ESCAPES)
def test_escape_refused_as_expression(source: str) -> None:
    problems = sandbox.check_expression(source)
    assert problems, f"{source!r} was allowed"
    with pytest.raises(sandbox.SandboxViolation) as info:
        sandbox.evaluate(source, {"x": {"a": 1}, "y": 5})
    assert info.value.problems == problems


@pytest.mark.parametrize("source", ESCAPES + SCRIPT_ESCAPES)
def test_escape_refused_as_script(source: str) -> None:
    script = source if source in SCRIPT_ESCAPES else f"result = {source}"
    assert sandbox.check_script(script), f"{script!r} was allowed"


@pytest.mark.parametrize("source, message", [
    ("__import__('os')", "'__import__' is not allowed"),
    ("x.__class__", "attribute '__class__' is not allowed"),
    ("getattr(x, 'a')", "calls to 'getattr' are not allowed"),
    ("type(x)", "calls to 'type' are not allowed"),
    ("'{}'.format(x)", "the 'format' method is not allowed; use an f-string instead"),
    ("x.gi_frame", "attribute 'gi_frame' is not allowed"),
    ("x.mro()", "calls to method 'mro' are not allowed"),
    ("amount >", "syntax error on line 1: invalid syntax"),
])
def test_expression_messages_are_plain(source: str, message: str) -> None:
    assert message in sandbox.check_expression(source)


def test_script_messages_name_the_problem() -> None:
    assert sandbox.check_script("import os") == ["imports are not allowed"]
    assert sandbox.check_script("x = 1\ny = (") == ["syntax error on line 2: '(' was never closed"]
    assert sandbox.check_script("return 1")[0].startswith("syntax error on line 1")
    problems = checker.find_problems("x = 1\ny = x.__class__\nz = getattr(x, 'a')", checker.SCRIPT)
    assert [(f.line, f.message) for f in problems] == [
        (2, "attribute '__class__' is not allowed"), (3, "calls to 'getattr' are not allowed")]


def test_data_names_that_shadow_unsafe_builtins_are_plain_data() -> None:
    """A form field called ``type``/``id``/``input`` is data, never the builtin."""
    assert sandbox.evaluate("type == 'travel' and id > 3", {"type": "travel", "id": 4}) is True
    with pytest.raises(sandbox.ScriptFailed) as info:
        sandbox.evaluate("input", {})
    assert info.value.error_type == "NameError"


@pytest.mark.parametrize("mode", ["expression", "script"])
@pytest.mark.parametrize("payload", [
    "__import__('os').system('touch {marker}')",
    "open('{marker}', 'w').write('x')",
    "getattr(__builtins__, 'open')('{marker}', 'w')",
    "[c for c in ().__class__.__base__.__subclasses__() if c.__name__ == 'Popen'][0](['touch', '{marker}'])",
    "eval(\"__import__('os').system('touch {marker}')\")",
    "import os\nos.system('touch {marker}')",
    "from subprocess import run\nrun(['touch', '{marker}'])",
])
def test_s1_os_access_refused_and_marker_never_appears(pool: object, tmp_path: Path, mode: str,
                                                       payload: str) -> None:
    marker = tmp_path / "marker"
    source = payload.format(marker=marker)
    with pytest.raises(sandbox.SandboxViolation):
        if mode == "expression":
            sandbox.evaluate(source, {})
        else:
            sandbox.execute(source, {})
    assert not marker.exists()


def test_s1_open_etc_passwd_refused(pool: object) -> None:
    for source in ("open('/etc/passwd').read()", "open('/etc/passwd')"):
        assert "calls to 'open' are not allowed" in sandbox.check_expression(source)
        with pytest.raises(sandbox.SandboxViolation):
            sandbox.evaluate(source, {})
        with pytest.raises(sandbox.SandboxViolation):
            sandbox.execute(f"data = {source}", {})
    assert_pool_healthy()


def test_runtime_builtins_hold_only_safe_names() -> None:
    """Defence in depth: even unchecked code finds no dangerous builtin."""
    names = set(runtime.SAFE_BUILTINS)
    for name in ("open", "eval", "exec", "compile", "getattr", "__import__", "type", "vars",
                 "globals", "object", "__build_class__", "breakpoint", "input", "print"):
        assert name not in names
    for source in ("open", "__import__", "getattr", "__build_class__"):
        code = compile(source, "<test>", "eval")
        with pytest.raises(NameError):
            eval(code, {"__builtins__": runtime.SAFE_BUILTINS})  # noqa: S307 - the test's point


def test_runtime_method_gate_refuses_private_and_unlisted_names() -> None:
    """Defence in depth: the method helper re-checks names the checker allowed."""
    with pytest.raises(TypeError):
        methods._sb_call((), "__class__")
    with pytest.raises(TypeError):
        methods._sb_call(str, "mro")
    with pytest.raises(TypeError):
        methods._sb_call("x", "format", 1)
    with pytest.raises(TypeError):
        methods._sb_call(str, "maketrans", "a", "b")
