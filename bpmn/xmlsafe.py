"""Parse uploaded XML safely: size cap, no DTDs or entities, no network, element cap.

Every uploaded BPMN or DMN document goes through ``parse_xml`` before anything
else looks at it. The rules, in order:

* refuse a document above ``BATON_MAX_UPLOAD_BYTES`` before parsing a byte;
* refuse any ``<!DOCTYPE`` / ``<!ENTITY`` outright. BPMN never needs them and
  they are how XXE (reading ``file:///etc/passwd``, calling a loopback port)
  and entity blow-ups (billion laughs, quadratic blow-up) work. Refusal happens
  on a byte scan before parsing; the parser itself also runs with entity
  resolution, DTD loading and network access off, and the parsed document is
  checked again for a DTD in case an exotic encoding hid it from the scan;
* stop as soon as the document has more than ``BATON_MAX_XML_ELEMENTS``
  elements (counted while parsing, so a 200k-element document costs little);
* refuse what is not XML, not decodable, or not a BPMN/DMN ``definitions``.

Messages never quote the document's content beyond what the parser reports
about its own syntax, so a refused XXE attempt cannot echo a server file.
"""
from __future__ import annotations

import io
import re
from typing import Literal

from django.conf import settings
from lxml import etree

from core.errors import DiagramRejected

from .problems import Problem

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
DMN_NS_PREFIXES = ("http://www.omg.org/spec/DMN/", "https://www.omg.org/spec/DMN/")

Kind = Literal["bpmn", "dmn"]

_DTD_DECLARATION = re.compile(rb"<!\s*(?:DOCTYPE|ENTITY)", re.IGNORECASE)


class _TooManyElements(Exception):
    pass


def parse_xml(data: bytes, *, file: str, kind: Kind | None = None) -> etree._Element:
    """Parse one uploaded document into an lxml root element, or refuse it.

    ``kind`` is "bpmn" or "dmn"; by default ``.dmn`` files are DMN and
    everything else BPMN. Raises ``DiagramRejected`` with one Problem naming
    the file (and the line when the parser knows it). Cost: one pass over the
    bytes for the scan, one streaming parse that stops at the element cap.
    """
    problem = xml_problem(data, file=file, kind=kind)
    if isinstance(problem, Problem):
        raise DiagramRejected(f"{file}: {problem.message}", details=[problem.as_dict()])
    return problem


def xml_problem(data: bytes, *, file: str, kind: Kind | None = None) -> etree._Element | Problem:
    """Return the parsed root, or the Problem that refuses the document.

    The non-raising form of ``parse_xml`` for callers that collect the
    problems of many files before refusing an upload as a whole.
    """
    if kind is None:
        kind = "dmn" if file.lower().endswith(".dmn") else "bpmn"
    if isinstance(data, str):  # text from a form field: lxml wants the bytes
        data = data.encode("utf-8")
    max_bytes = settings.BATON_MAX_UPLOAD_BYTES
    if len(data) > max_bytes:
        return Problem(
            message=f"the file is {_megabytes(len(data))} and the upload limit is {_megabytes(max_bytes)}",
            file=file,
        )
    if not data.strip():
        return Problem(message="the file is empty", file=file)
    if _declares_dtd(data):
        return _dtd_problem(file)
    try:
        root = _parse_capped(data, settings.BATON_MAX_XML_ELEMENTS)
    except _TooManyElements:
        return Problem(
            message=f"the document has more than {settings.BATON_MAX_XML_ELEMENTS:,} XML elements, "
            "the limit for one upload",
            file=file,
        )
    except etree.XMLSyntaxError as exc:
        return Problem(message=_syntax_message(exc), line=_line(exc), file=file)
    except (ValueError, LookupError, UnicodeError) as exc:
        return Problem(message=f"the file could not be read as XML ({exc.__class__.__name__})", file=file)
    docinfo = root.getroottree().docinfo
    if docinfo.internalDTD is not None or docinfo.externalDTD is not None or docinfo.doctype:
        return _dtd_problem(file)
    return _root_problem(root, file=file, kind=kind) or root


def _parse_capped(data: bytes, max_elements: int) -> etree._Element:
    """Stream-parse with every dangerous libxml2 feature off, counting elements."""
    events = etree.iterparse(
        io.BytesIO(data),
        events=("start",),
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_blank_text=False,
    )
    count = 0
    for _event, _element in events:
        count += 1
        if count > max_elements:
            raise _TooManyElements
    root = events.root
    if root is None:  # pragma: no cover - libxml2 raises first
        raise etree.XMLSyntaxError("no root element", None, 0, 0)
    return root


def _declares_dtd(data: bytes) -> bool:
    """Tell whether the bytes contain a DOCTYPE or ENTITY declaration (any common encoding)."""
    if _DTD_DECLARATION.search(data):
        return True
    head = data[:4]
    for bom, codec in ((b"\xff\xfe\x00\x00", "utf-32-le"), (b"\x00\x00\xfe\xff", "utf-32-be")):
        if head.startswith(bom):
            return _DTD_DECLARATION.search(data.decode(codec, errors="ignore").encode()) is not None
    if b"\x00" in data[:200]:
        for codec in ("utf-16-le", "utf-16-be", "utf-16"):
            text = data.decode(codec, errors="ignore").encode("utf-8", errors="ignore")
            if _DTD_DECLARATION.search(text):
                return True
    return False


def _root_problem(root: etree._Element, *, file: str, kind: Kind) -> Problem | None:
    qname = etree.QName(root) if isinstance(root.tag, str) else None
    namespace = qname.namespace if qname else None
    localname = qname.localname if qname else str(root.tag)
    if kind == "dmn":
        if localname == "definitions" and namespace and namespace.startswith(DMN_NS_PREFIXES):
            return None
        expected = "a DMN <definitions> element (namespace https://www.omg.org/spec/DMN/...)"
    else:
        if localname == "definitions" and namespace == BPMN_NS:
            return None
        expected = f"a BPMN 2.0 <definitions> element (namespace {BPMN_NS})"
    found = f"<{localname}>" + (f" in namespace {namespace}" if namespace else " without a namespace")
    return Problem(
        message=f"this is not a {kind.upper()} document: the root element is {found}, expected {expected}",
        line=root.sourceline or 0,
        file=file,
    )


def _dtd_problem(file: str) -> Problem:
    return Problem(
        message="XML document type declarations (<!DOCTYPE>, <!ENTITY>) are not allowed: BPMN and DMN "
        "never need them, and they can read server files or exhaust memory. Remove the declaration.",
        file=file,
    )


def _syntax_message(exc: etree.XMLSyntaxError) -> str:
    text = exc.msg if getattr(exc, "msg", None) else str(exc)
    text = re.sub(r",? line \d+, column \d+.*$", "", str(text)).strip() or "malformed XML"
    if "encoding" in text.lower() or "utf-8" in text.lower() or "bytes" in text.lower():
        return f"the file is not valid text in its declared encoding: {text}"
    if "Document is empty" in text or "no element found" in text:
        return "the file contains no XML element"
    return f"the file is not well-formed XML: {text}"


def _line(exc: etree.XMLSyntaxError) -> int:
    line = getattr(exc, "lineno", 0)
    if not line and exc.position:
        line = exc.position[0]
    return int(line or 0)


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


__all__ = ["BPMN_NS", "parse_xml", "xml_problem"]
