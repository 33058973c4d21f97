"""A small accessibility and markup checker for the server-rendered pages (tests/approvals/test_page_markup.py).

``problems(html)`` parses a page with Python's ``html.parser`` into a light tree and returns one precise message
per broken rule: ``line N: <rule>: <tag id=.. name=..>: what is wrong``. The rules (docs: DESIGN.md "Web UI"):

- html-lang: the ``<html>`` element has a non-empty ``lang``;
- one-h1: exactly one ``<h1>``;
- heading-order: heading levels never skip going down (h1 then h3);
- label: every ``input``/``select``/``textarea`` (not hidden, submit, reset, button or image) has a
  ``<label for=its id>``, an ``aria-label``, an ``aria-labelledby``, or sits inside a ``<label>``;
- unique-id: ids are unique;
- idref: every id named by ``aria-describedby``, ``aria-labelledby``, ``aria-controls``, ``aria-errormessage``,
  ``<label for>``, ``<input list>`` or an in-page reference (``href="#id"``, ``hx-target="#id"``) exists;
- table-th / th-scope: every ``<table>`` has a ``<th>``; every ``<th>`` in a ``<thead>`` has ``scope``;
- img-alt: every ``<img>`` has an ``alt`` (empty for decoration);
- tabindex: no positive ``tabindex``;
- name: buttons and links (``a[href]``) have accessible text: text outside ``aria-hidden`` parts, an
  ``aria-label``/``aria-labelledby``, an ``<img alt>``, or (input buttons) a ``value``;
- label-text: a ``<label>`` has text;
- csrf: a ``method="post"`` form holds the ``csrfmiddlewaretoken`` hidden input;
- nested-form / nested-interactive: no form inside a form, no link or button inside a link or button
  (browsers drop the inner form; assistive technology cannot reach the inner control);
- file-form: a form with a file input posts ``multipart/form-data`` (else the file never arrives);
- error-link: a control marked ``aria-invalid="true"`` names its message with ``aria-describedby`` (or
  ``aria-errormessage``), and every field error message (an id ending in ``-error``, the templates' convention)
  is named by some control, so a screen reader reads it with the field;
- phone-width: no inline ``style`` sets a ``width``/``min-width`` above 375 px (a phone's width);
  ``css_problems(css)`` checks the same in a stylesheet.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

PHONE_PX = 375
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
# a start tag closes these open elements first (the parts of HTML's implied end tags the templates may rely on)
CLOSES = {
    "li": {"li"}, "option": {"option"}, "dt": {"dt", "dd"}, "dd": {"dt", "dd"}, "p": {"p"},
    "tr": {"tr", "td", "th"}, "td": {"td", "th"}, "th": {"td", "th"},
    "thead": {"thead", "tbody", "tfoot", "tr", "td", "th"}, "tbody": {"thead", "tbody", "tfoot", "tr", "td", "th"},
    "tfoot": {"thead", "tbody", "tfoot", "tr", "td", "th"},
}
UNLABELLED_INPUTS = {"hidden", "submit", "reset", "button", "image"}
IN_PAGE = re.compile(r"#([A-Za-z][\w:.-]*)")
WIDTH = re.compile(r"(?:^|;)\s*((?:min-)?width)\s*:\s*([0-9]+(?:\.[0-9]+)?)px", re.I)
CSS_WIDTH = re.compile(r"(?<![\w-])((?:min-)?width)\s*:\s*([0-9]+(?:\.[0-9]+)?)px", re.I)


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    line: int
    parent: Node | None = None
    children: list[Node | str] = field(default_factory=list)

    def ancestors(self):
        node = self.parent
        while node is not None:
            yield node
            node = node.parent

    def walk(self):
        for child in self.children:
            if isinstance(child, Node):
                yield child
                yield from child.walk()

    def text(self) -> str:
        """Text content as a screen reader gets it: ``aria-hidden`` parts left out, ``<img alt>`` included."""
        if self.attrs.get("aria-hidden") == "true":
            return ""
        if self.tag == "img":
            return self.attrs.get("alt", "")
        return " ".join(c if isinstance(c, str) else c.text() for c in self.children).strip()

    def describe(self) -> str:
        shown = [f'{k}="{self.attrs[k]}"' for k in ("id", "name", "type", "href", "action") if self.attrs.get(k)]
        return "<" + " ".join([self.tag, *shown]) + ">"


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {}, 0)
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        closes = CLOSES.get(tag, set())
        while len(self.stack) > 1 and self.stack[-1].tag in closes:
            self.stack.pop()
        node = Node(tag, {k: (v if v is not None else "") for k, v in attrs}, self.getpos()[0], self.stack[-1])
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID and self.stack[-1].tag == tag:
            self.stack.pop()

    def handle_endtag(self, tag):
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data):
        self.stack[-1].children.append(data)


def parse(html: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


def _ids(value: str) -> list[str]:
    return value.split()


def _has_name(node: Node) -> bool:
    if node.attrs.get("aria-label", "").strip() or node.attrs.get("aria-labelledby", "").strip():
        return True
    if node.tag == "input":  # only type=button: submit and reset have a default name
        return bool(node.attrs.get("value", "").strip())
    return bool(node.text())


def problems(html: str) -> list[str]:
    """Every broken rule of the page, in document order within each rule (see the module docstring)."""
    root = parse(html)
    nodes = list(root.walk())
    found: list[str] = []

    def bad(node: Node | None, rule: str, message: str) -> None:
        where = f"line {node.line}: " if node is not None else ""
        found.append(f"{where}{rule}: {node.describe() + ': ' if node is not None else ''}{message}")

    html_nodes = [n for n in nodes if n.tag == "html"]
    if not html_nodes:
        bad(None, "html-lang", "no <html> element")
    elif not html_nodes[0].attrs.get("lang", "").strip():
        bad(html_nodes[0], "html-lang", "the <html> element has no lang")

    h1s = [n for n in nodes if n.tag == "h1"]
    if len(h1s) != 1:
        lines = ", ".join(str(n.line) for n in h1s) or "none"
        bad(None, "one-h1", f"expected exactly one <h1>, found {len(h1s)} (lines: {lines})")

    previous = 0
    for node in nodes:
        if re.fullmatch(r"h[1-6]", node.tag):
            level = int(node.tag[1])
            if level > previous + 1:
                after = f"h{previous}" if previous else "the start of the page"
                bad(node, "heading-order", f"<{node.tag}> '{node.text()[:40]}' follows {after} (skips a level)")
            previous = level

    ids: dict[str, Node] = {}
    for node in nodes:
        value = node.attrs.get("id")
        if value is None:
            continue
        if not value.strip():
            bad(node, "unique-id", "empty id")
        elif value in ids:
            bad(node, "unique-id", f'id "{value}" already used on line {ids[value].line}')
        else:
            ids[value] = node
    label_for = {n.attrs["for"] for n in nodes if n.tag == "label" and n.attrs.get("for")}
    described = {target for n in nodes for attr in ("aria-describedby", "aria-errormessage")
                 for target in _ids(n.attrs.get(attr, ""))}

    for node in nodes:
        for attr in ("aria-describedby", "aria-labelledby", "aria-controls", "aria-errormessage", "list"):
            for target in _ids(node.attrs.get(attr, "")):
                if target not in ids:
                    bad(node, "idref", f'{attr} names id "{target}", which is not on the page')
        for attr in ("href", "hx-target", "hx-select"):
            target = IN_PAGE.fullmatch(node.attrs.get(attr, "").strip())
            if target and target.group(1) not in ids:
                bad(node, "idref", f'{attr}="#{target.group(1)}" points to an id that is not on the page')
        if node.tag == "label" and node.attrs.get("for") and node.attrs["for"] not in ids:
            bad(node, "idref", f'<label for="{node.attrs["for"]}"> names an id that is not on the page')

        if node.tag in ("input", "select", "textarea"):
            kind = node.attrs.get("type", "text").lower() if node.tag == "input" else ""
            if kind not in UNLABELLED_INPUTS:
                labelled = (node.attrs.get("id") in label_for or node.attrs.get("aria-label", "").strip()
                            or node.attrs.get("aria-labelledby", "").strip()
                            or any(a.tag == "label" for a in node.ancestors()))
                if not labelled:
                    bad(node, "label", "form control without a label (label for=id, aria-label(ledby) or a "
                                       "wrapping <label>)")
            elif kind == "button" and not _has_name(node):
                bad(node, "name", "input button without a value or aria-label")

        if node.tag == "table":
            cells = [n for n in node.walk() if n.tag == "th"]
            if not cells:
                bad(node, "table-th", "table without any <th> header cell")
        if node.tag == "th" and any(a.tag == "thead" for a in node.ancestors()) and not node.attrs.get("scope"):
            bad(node, "th-scope", f"<th> '{node.text()[:40]}' in <thead> has no scope")

        if node.tag == "img" and "alt" not in node.attrs:
            bad(node, "img-alt", "image without alt (alt=\"\" if decorative)")

        tabindex = node.attrs.get("tabindex", "").strip()
        if re.fullmatch(r"\+?[0-9]+", tabindex) and int(tabindex) > 0:
            bad(node, "tabindex", f"positive tabindex={tabindex} changes the keyboard order")

        if (node.tag == "button" or (node.tag == "a" and "href" in node.attrs)) and not _has_name(node):
            bad(node, "name", f"<{node.tag}> without accessible text (text content or aria-label)")

        if node.tag == "label" and not node.text():
            bad(node, "label-text", "label without text")

        if node.tag == "form" and any(a.tag == "form" for a in node.ancestors()):
            bad(node, "nested-form", "form inside another form (browsers ignore the inner one)")
        if node.tag in ("a", "button") and any(a.tag == "button" or (a.tag == "a" and "href" in a.attrs)
                                               for a in node.ancestors()):
            bad(node, "nested-interactive", f"<{node.tag}> inside a link or button")
        if node.tag == "input" and node.attrs.get("type", "").lower() == "file":
            form = next((a for a in node.ancestors() if a.tag == "form"), None)
            if form is not None and (form.attrs.get("method", "get").lower() != "post"
                                     or form.attrs.get("enctype", "").lower() != "multipart/form-data"):
                bad(node, "file-form", 'file input in a form without method="post" enctype="multipart/form-data"')

        if node.attrs.get("aria-invalid") == "true" and not (node.attrs.get("aria-describedby", "").strip()
                                                             or node.attrs.get("aria-errormessage", "").strip()):
            bad(node, "error-link", 'aria-invalid="true" without aria-describedby naming its error message')
        if node.attrs.get("id", "").endswith("-error") and node.attrs["id"] not in described:
            bad(node, "error-link", f'error message id "{node.attrs["id"]}" is not named by any control\'s '
                                    "aria-describedby")

        if node.tag == "form" and node.attrs.get("method", "get").lower() == "post":
            token = any(n.tag == "input" and n.attrs.get("name") == "csrfmiddlewaretoken"
                        and n.attrs.get("type", "").lower() == "hidden" for n in node.walk())
            if not token:
                bad(node, "csrf", "POST form without the csrfmiddlewaretoken hidden input ({% csrf_token %})")

        for prop, px in WIDTH.findall(node.attrs.get("style", "")):
            if float(px) > PHONE_PX:
                bad(node, "phone-width", f"inline style {prop}: {px}px is wider than a {PHONE_PX} px phone")
    return found


def css_problems(css: str) -> list[str]:
    """Each fixed ``width``/``min-width`` above 375 px in a stylesheet (``max-width`` is fine), with its line."""
    found = []
    for match in CSS_WIDTH.finditer(css):
        prop, px = match.groups()
        if float(px) > PHONE_PX:
            line = css.count("\n", 0, match.start()) + 1
            found.append(f"line {line}: phone-width: {prop}: {px}px is wider than a {PHONE_PX} px phone")
    return found
