"""Check user code against the allowed Python subset, then rewrite and compile it.

The check walks the AST and refuses anything outside the subset (imports,
names or attributes starting with ``_``, dangerous builtins, unlisted methods,
``str.format``, computed f-string specs ...). The rewrite then routes every
operation that can blow up through a capped helper from ``runtime``:
``+ * ** << %`` become ``_sb_add`` ..., method calls become
``_sb_call(obj, "name", ...)``, constructor calls ``list(x)`` become
``_sb_list(x)``, slices ``_sb_slice``, f-strings ``_sb_fstr``, ``{*x}``
``_sb_set([*x])`` (hash tables are built in chunks), values C code may
retain (comprehension elements, lambda results, ``*x`` unpacking) are charged
by size through ``_sb_keep`` / ``_sb_ret`` / ``_sb_star``, and every
loop iteration and function call ticks the work budget. User
code cannot name the helpers: they start with ``_``.

Both steps are pure and cached by source text, so a condition evaluated a
million times is parsed, checked and compiled once. Line numbers are kept, so
tracebacks point at the user's lines.
"""
from __future__ import annotations

import ast
import copy
import functools
import re
import textwrap
from dataclasses import dataclass
from types import CodeType

from . import policy

EXPRESSION, SCRIPT = "eval", "exec"
EXPRESSION_FILENAME, SCRIPT_FILENAME = "<expression>", "<script>"

_COMMON_NODES: tuple[type[ast.AST], ...] = (
    ast.BoolOp, ast.BinOp, ast.UnaryOp, ast.Lambda, ast.IfExp, ast.Dict, ast.Set,
    ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.Compare, ast.Call,
    ast.FormattedValue, ast.JoinedStr, ast.Constant, ast.Attribute, ast.Subscript,
    ast.Starred, ast.Name, ast.List, ast.Tuple, ast.Slice, ast.NamedExpr,
    ast.comprehension, ast.arguments, ast.arg, ast.keyword,
    ast.expr_context, ast.boolop, ast.operator, ast.unaryop, ast.cmpop,
)
_SCRIPT_NODES: tuple[type[ast.AST], ...] = (
    ast.Module, ast.Expr, ast.Assign, ast.AugAssign, ast.Delete, ast.Pass, ast.Break,
    ast.Continue, ast.If, ast.For, ast.While, ast.FunctionDef, ast.Return, ast.Try,
    ast.ExceptHandler, ast.Raise, ast.Assert,
)
_REFUSED_NODES: dict[type[ast.AST], str] = {
    ast.Import: "imports are not allowed",
    ast.ImportFrom: "imports are not allowed",
    ast.Global: "'global' is not allowed",
    ast.Nonlocal: "'nonlocal' is not allowed",
    ast.ClassDef: "class definitions are not allowed",
    ast.With: "'with' statements are not allowed",
    ast.AsyncWith: "async code is not allowed",
    ast.AsyncFor: "async code is not allowed",
    ast.AsyncFunctionDef: "async code is not allowed",
    ast.Await: "async code is not allowed",
    ast.Yield: "generators ('yield') are not allowed",
    ast.YieldFrom: "generators ('yield') are not allowed",
    ast.Match: "'match' statements are not allowed",
    ast.AnnAssign: "annotated assignments are not allowed",
}
_CAPPED_OPS: dict[type[ast.operator], str] = {
    ast.Add: "_sb_add", ast.Mult: "_sb_mul", ast.Pow: "_sb_pow",
    ast.LShift: "_sb_lshift", ast.Mod: "_sb_mod",
}
_NUMBER_IN_SPEC = re.compile(r"\d+")


@dataclass(frozen=True)
class Finding:
    """One reason to refuse code: a plain-English message, its line and column (0 if unknown)."""

    line: int
    message: str
    column: int = 0


@dataclass(frozen=True)
class Compiled:
    """The outcome of checking one source: a code object, or the findings that refused it."""

    code: CodeType | None
    findings: tuple[Finding, ...]

    @property
    def problems(self) -> list[str]:
        """Return the distinct messages in source order."""
        return list(dict.fromkeys(f.message for f in self.findings))


def _normalise(source: str, mode: str) -> str:
    """Drop the indentation an XML editor adds, keeping line numbers unchanged."""
    if mode == SCRIPT:
        return textwrap.dedent(source)
    stripped = source.lstrip()
    leading_newlines = source[: len(source) - len(stripped)].count("\n")
    return "\n" * leading_newlines + stripped.rstrip()


def _parse(source: str, mode: str) -> tuple[ast.AST | None, list[Finding]]:
    """Parse ``source``; on failure return the finding instead of raising."""
    limit = policy.MAX_EXPRESSION_CHARS if mode == EXPRESSION else policy.MAX_SCRIPT_CHARS
    what = "expression" if mode == EXPRESSION else "script"
    if not isinstance(source, str):
        return None, [Finding(0, f"the {what} must be text")]
    if len(source) > limit:
        return None, [Finding(0, f"the {what} is longer than {limit} characters")]
    text = _normalise(source, mode)
    if not text.strip():
        return None, [Finding(0, f"the {what} is empty")]
    try:
        return ast.parse(text, mode=mode), []
    except SyntaxError as exc:
        return None, [Finding(exc.lineno or 0, f"syntax error on line {exc.lineno or 1}: {exc.msg}")]
    except (RecursionError, MemoryError, ValueError):
        return None, [Finding(0, f"the {what} is nested too deeply")]


def _check_name(node: ast.Name, parent: ast.AST | None) -> str | None:
    """Return why a name is refused, or None."""
    name = node.id
    if name.startswith("_"):
        return f"'{name}' is not allowed"
    is_called = isinstance(parent, ast.Call) and parent.func is node
    if is_called and name in policy.FORBIDDEN_CALLS:
        return f"calls to '{name}' are not allowed"
    if name in policy.FORBIDDEN_NAMES:
        return f"'{name}' is not allowed"
    if not isinstance(node.ctx, ast.Load) and name in policy.CONSTRUCTOR_NAMES:
        return f"'{name}' is a built-in name and cannot be assigned"
    if name in policy.CONSTRUCTOR_NAMES and not is_called and not (
            isinstance(parent, ast.Attribute) and parent.value is node):
        return f"'{name}' can only be called, not used as a value"
    return None


def _check_attribute(node: ast.Attribute, parent: ast.AST | None) -> str | None:
    """Return why an attribute access is refused, or None."""
    attr = node.attr
    if attr.startswith("_"):
        return f"attribute '{attr}' is not allowed"
    if attr in policy.FORMAT_METHODS:
        return f"the '{attr}' method is not allowed; use an f-string instead"
    if not isinstance(node.ctx, ast.Load):
        return "assigning or deleting attributes is not allowed"
    if isinstance(parent, ast.Call) and parent.func is node:
        return None if attr in policy.METHODS else f"calls to method '{attr}' are not allowed"
    if attr in policy.VALUE_ATTRIBUTES:
        return None
    if attr in policy.METHODS:
        return f"method '{attr}' can only be called, not used as a value"
    return f"attribute '{attr}' is not allowed"


def _check_format_spec(spec: ast.JoinedStr) -> str | None:
    """Refuse computed f-string specs and widths/precisions that build huge strings."""
    for part in spec.values:
        if not isinstance(part, ast.Constant):
            return "computed format specifications in f-strings are not allowed"
        for number in _NUMBER_IN_SPEC.findall(str(part.value)):
            if len(number) > 6 or int(number) > policy.MAX_FORMAT_WIDTH:
                return f"format widths above {policy.MAX_FORMAT_WIDTH} are not allowed"
    return None


def _check_node(node: ast.AST, parent: ast.AST | None, allowed: tuple[type[ast.AST], ...]) -> str | None:
    """Return why one node is refused, or None (children are checked separately)."""
    if isinstance(node, ast.Name):
        return _check_name(node, parent)
    if isinstance(node, ast.Attribute):
        return _check_attribute(node, parent)
    if not isinstance(node, allowed):
        return _REFUSED_NODES.get(type(node), f"'{type(node).__name__}' is not allowed")
    if isinstance(node, ast.FormattedValue) and node.format_spec is not None:
        return _check_format_spec(node.format_spec)  # type: ignore[arg-type]
    if isinstance(node, ast.arg) and node.arg.startswith("_"):
        return f"'{node.arg}' is not allowed"
    if isinstance(node, ast.FunctionDef):
        if node.name.startswith("_") or node.name in policy.BUILTIN_NAMES | policy.FORBIDDEN_CALLS:
            return f"a function cannot be named '{node.name}'"
        if node.decorator_list:
            return "decorators are not allowed"
    if isinstance(node, ast.ExceptHandler):
        if node.type is None:
            return "a bare 'except:' is not allowed; name the exception types"
        if node.name and node.name.startswith("_"):
            return f"'{node.name}' is not allowed"
    if isinstance(node, ast.comprehension) and node.is_async:
        return "async code is not allowed"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "pow" and (
            len(node.args) != 2 or node.keywords):
        return "pow() takes exactly 2 arguments here"
    return None


def find_problems(source: str, mode: str) -> list[Finding]:
    """Return every reason to refuse ``source`` (``mode`` is "eval" or "exec")."""
    tree, findings = _parse(source, mode)
    if tree is None:
        return findings
    allowed = _COMMON_NODES + ((ast.Expression,) if mode == EXPRESSION else _SCRIPT_NODES)
    stack: list[tuple[ast.AST, ast.AST | None]] = [(tree, None)]
    while stack:  # depth-first, iterative; a refused construct's insides are not reported
        node, parent = stack.pop()
        message = _check_node(node, parent, allowed)
        if message:
            findings.append(Finding(getattr(node, "lineno", 0), message, getattr(node, "col_offset", 0)))
        if not (isinstance(node, (ast.stmt, ast.expr)) and not isinstance(node, allowed)):
            stack.extend((child, node) for child in ast.iter_child_nodes(node))
    findings.sort(key=lambda f: (f.line, f.column))
    return findings


def _helper(name: str, args: list[ast.expr], like: ast.AST,
            keywords: list[ast.keyword] | None = None) -> ast.Call:
    """Build ``name(*args)`` located at ``like``."""
    call = ast.Call(func=ast.Name(id=name, ctx=ast.Load()), args=args, keywords=keywords or [])
    return ast.copy_location(call, like)


def _tick(like: ast.AST) -> ast.Expr:
    """Build the statement ``_sb_tick()`` (one unit of loop/call work)."""
    return ast.copy_location(ast.Expr(value=_helper("_sb_tick", [], like)), like)


class _Rewriter(ast.NodeTransformer):
    """Route capped operations through runtime helpers (run only on checked trees)."""

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        """Route ``+ * ** << %`` through their capped helpers."""
        self.generic_visit(node)
        helper = _CAPPED_OPS.get(type(node.op))
        return _helper(helper, [node.left, node.right], node) if helper else node

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        """Rewrite ``x op= y`` as ``x = helper(x, y)`` for the capped operators."""
        self.generic_visit(node)
        helper = _CAPPED_OPS.get(type(node.op))
        if helper is None:
            return node
        current = copy.deepcopy(node.target)
        current.ctx = ast.Load()  # type: ignore[attr-defined]
        value = _helper(helper, [current, node.value], node)
        return ast.copy_location(ast.Assign(targets=[node.target], value=value), node)

    def visit_Call(self, node: ast.Call) -> ast.AST:
        """Route method calls through ``_sb_call`` and constructor calls to ``_sb_<name>``."""
        self.generic_visit(node)
        func = node.func
        if isinstance(func, ast.Attribute):
            name = ast.copy_location(ast.Constant(value=func.attr), func)
            return _helper("_sb_call", [func.value, name, *node.args], node, node.keywords)
        if isinstance(func, ast.Name) and func.id in policy.CONSTRUCTOR_NAMES:
            return _helper(f"_sb_{func.id}", node.args, node, node.keywords)
        return node

    def visit_Subscript(self, node: ast.Subscript) -> ast.AST:
        """Route slicing (a copy) through ``_sb_slice``."""
        self.generic_visit(node)
        if isinstance(node.slice, ast.Slice) and isinstance(node.ctx, ast.Load):
            s = node.slice
            parts = [p if p is not None else ast.copy_location(ast.Constant(value=None), node)
                     for p in (s.lower, s.upper, s.step)]
            return _helper("_sb_slice", [node.value, *parts], node)
        return node

    def visit_JoinedStr(self, node: ast.JoinedStr) -> ast.AST:
        # Not generic_visit: a format spec is itself a JoinedStr that must stay one.
        """Check formatted values and cap the finished f-string."""
        for part in node.values:
            if isinstance(part, ast.FormattedValue):
                value = self.visit(part.value)
                part.value = _helper("_sb_fmtval", [value], part.value)
        return _helper("_sb_fstr", [node], node)

    def visit_Set(self, node: ast.Set) -> ast.AST:
        """Build ``{*x}`` displays in chunks (hash-collision safe)."""
        self.generic_visit(node)
        if any(isinstance(e, ast.Starred) for e in node.elts):  # {*big}: build in chunks
            items = ast.copy_location(ast.List(elts=node.elts, ctx=ast.Load()), node)
            return _helper("_sb_set", [items], node)
        return node

    def visit_comprehension(self, node: ast.comprehension) -> ast.AST:
        """Charge every item a comprehension's loop takes."""
        self.generic_visit(node)
        node.iter = _helper("_sb_iter", [node.iter], node.iter)
        return node

    def visit_For(self, node: ast.For) -> ast.AST:
        """Charge every item a ``for`` loop takes."""
        self.generic_visit(node)
        node.iter = _helper("_sb_iter", [node.iter], node.iter)
        return node

    def visit_While(self, node: ast.While) -> ast.AST:
        """Charge every ``while`` iteration."""
        self.generic_visit(node)
        node.body.insert(0, _tick(node))
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        """Charge every call of a user function."""
        self.generic_visit(node)
        node.body.insert(0, _tick(node.body[0]))
        return node

    def visit_Lambda(self, node: ast.Lambda) -> ast.AST:
        """Charge every lambda call and what its result may retain."""
        self.generic_visit(node)
        node.body = _helper("_sb_ret", [node.body], node.body)
        return node

    def _keep_elements(self, node: ast.AST) -> ast.AST:
        """Charge comprehension elements by size (C code may retain them)."""
        self.generic_visit(node)
        node.elt = _helper("_sb_keep", [node.elt], node.elt)  # type: ignore[attr-defined]
        return node

    visit_ListComp = visit_SetComp = visit_GeneratorExp = _keep_elements

    def visit_DictComp(self, node: ast.DictComp) -> ast.AST:
        """Charge dict-comprehension keys and values by size."""
        self.generic_visit(node)
        node.key = _helper("_sb_keep", [node.key], node.key)
        node.value = _helper("_sb_keep", [node.value], node.value)
        return node

    def visit_Starred(self, node: ast.Starred) -> ast.AST:
        """Charge ``*x`` unpacking by the number of items."""
        self.generic_visit(node)
        if isinstance(node.ctx, ast.Load):
            node.value = _helper("_sb_star", [node.value], node.value)
        return node

    def visit_Dict(self, node: ast.Dict) -> ast.AST:
        """Charge ``**x`` unpacking in dict displays by the number of items."""
        self.generic_visit(node)
        node.values = [_helper("_sb_dstar", [v], v) if k is None else v
                       for k, v in zip(node.keys, node.values)]
        return node


@functools.lru_cache(maxsize=4096)
def compile_checked(source: str, mode: str) -> Compiled:
    """Check, rewrite and compile ``source`` once; later calls hit the cache.

    The cache holds refusals too, so a bad condition evaluated in a loop does
    not re-parse. Costs one parse, two walks and one compile per new source.
    """
    findings = find_problems(source, mode)
    if findings:
        return Compiled(None, tuple(findings))
    tree, _ = _parse(source, mode)
    filename = EXPRESSION_FILENAME if mode == EXPRESSION else SCRIPT_FILENAME
    try:
        tree = ast.fix_missing_locations(_Rewriter().visit(tree))
        code = compile(tree, filename, mode, dont_inherit=True)
    except SyntaxError as exc:  # e.g. 'return' outside a function
        message = f"syntax error on line {exc.lineno or 1}: {exc.msg}"
        return Compiled(None, (Finding(exc.lineno or 0, message),))
    except (RecursionError, MemoryError, ValueError):
        return Compiled(None, (Finding(0, "the code is nested too deeply"),))
    return Compiled(code, ())


def normalised_source(source: str, mode: str) -> str:
    """Return the text that was compiled (for showing the user's lines in tracebacks)."""
    return _normalise(source, mode)
