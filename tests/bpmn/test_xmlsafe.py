"""Safe XML parsing: XXE (S4), entity blow-ups (S5), size and element caps (S6), bad input."""
from __future__ import annotations

import socket
import threading
import time
import tracemalloc

import pytest
from django.test import override_settings

from bpmn import xmlsafe
from bpmn.services import definition_upload
from bpmn.xmlsafe import parse_xml
from core.errors import DiagramRejected

from .conftest import fixture_files, problems_of

BPMN_ROOT = b'<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d">'


class _Listener:
    """A loopback TCP port that records every connection made to it."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def listener():
    server = _Listener()
    yield server
    server.close()


def _refusal(data: bytes, file: str = "evil.bpmn") -> DiagramRejected:
    with pytest.raises(DiagramRejected) as exc_info:
        parse_xml(data, file=file)
    problems_of(exc_info)
    return exc_info.value


def _xxe_documents(port: int) -> dict[str, bytes]:
    body = BPMN_ROOT + b"<bpmn:documentation>&x;</bpmn:documentation></bpmn:definitions>"
    return {
        "file": b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>' + body,
        "http": f'<!DOCTYPE d [<!ENTITY x SYSTEM "http://127.0.0.1:{port}/x">]>'.encode() + body,
        "parameter": f'<!DOCTYPE d [<!ENTITY % p SYSTEM "http://127.0.0.1:{port}/p.dtd"> %p;]>'.encode() + body,
        "external_dtd": f'<!DOCTYPE d SYSTEM "http://127.0.0.1:{port}/d.dtd">'.encode() + BPMN_ROOT
        + b"</bpmn:definitions>",
        "utf16": '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        .encode("utf-16") + body.decode().encode("utf-16")[2:],
    }


@pytest.mark.parametrize("variant", ["file", "http", "parameter", "external_dtd", "utf16"])
def test_s4_xxe_is_refused_without_reading_files_or_connecting(listener, variant):
    data = _xxe_documents(listener.port)[variant]
    error = _refusal(data)
    text = str(error.as_dict())
    assert "root:" not in text and "/bin/" not in text, "no passwd content anywhere"
    assert "DOCTYPE" in text
    time.sleep(0.1)
    assert listener.connections == 0


@pytest.mark.django_db
def test_s4_xxe_through_the_upload_service(listener):
    data = _xxe_documents(listener.port)["http"]
    with pytest.raises(DiagramRejected) as exc_info:
        definition_upload(files=[("evil.bpmn", data)], uploaded_by=None)
    assert exc_info.value.status in (400, 422)
    assert "root:" not in str(exc_info.value.as_dict())
    assert listener.connections == 0


def _billion_laughs() -> bytes:
    entities = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{"".join(f"&lol{i - 1};" for _ in range(10))}">' for i in range(1, 10)
    ]
    return (f'<?xml version="1.0"?><!DOCTYPE d [{"".join(entities)}]>'.encode()
            + BPMN_ROOT + b"<bpmn:documentation>&lol9;</bpmn:documentation></bpmn:definitions>")


def _quadratic_blowup() -> bytes:
    big = "a" * 100_000
    refs = "&a;" * 40_000
    return (f'<!DOCTYPE d [<!ENTITY a "{big}">]>'.encode() + BPMN_ROOT
            + f"<bpmn:documentation>{refs}</bpmn:documentation></bpmn:definitions>".encode())


@pytest.mark.parametrize("build", [_billion_laughs, _quadratic_blowup], ids=["billion_laughs", "quadratic"])
def test_s5_entity_blowups_are_refused_quickly_with_little_memory(build):
    data = build()
    tracemalloc.start()
    started = time.perf_counter()
    _refusal(data)
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert elapsed < 1.0
    assert peak < 20 * 1024 * 1024


def test_s5_dtd_hidden_from_the_byte_scan_is_still_refused(monkeypatch):
    monkeypatch.setattr(xmlsafe, "_declares_dtd", lambda data: False)
    started = time.perf_counter()
    error = _refusal(_billion_laughs())
    assert time.perf_counter() - started < 1.0
    assert "DOCTYPE" in error.message or "entity" in error.message  # libxml2's own guard may fire first


def test_s6_oversized_upload_is_refused_before_parsing(monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("the parser must not run")

    monkeypatch.setattr(xmlsafe, "_parse_capped", never)
    monkeypatch.setattr(xmlsafe, "_declares_dtd", never)
    data = BPMN_ROOT + b" " * (50 * 1024 * 1024) + b"</bpmn:definitions>"
    started = time.perf_counter()
    error = _refusal(data)
    assert time.perf_counter() - started < 1.0
    assert "limit" in error.details[0]["message"]


@pytest.mark.django_db
def test_s6_oversized_upload_through_the_service():
    data = b"<" * (50 * 1024 * 1024)
    with pytest.raises(DiagramRejected) as exc_info:
        definition_upload(files=[("huge.bpmn", data)], uploaded_by=None)
    assert "upload limit" in problems_of(exc_info)[0]["message"]


def test_s6_too_many_elements_are_refused_quickly():
    data = BPMN_ROOT + b"<bpmn:documentation/>" * 200_000 + b"</bpmn:definitions>"
    assert len(data) < 5 * 1024 * 1024
    started = time.perf_counter()
    error = _refusal(data)
    assert time.perf_counter() - started < 1.0
    assert "20,000 XML elements" in error.details[0]["message"]


@override_settings(BATON_MAX_XML_ELEMENTS=10)
def test_element_cap_follows_the_setting():
    data = BPMN_ROOT + b"<bpmn:documentation/>" * 10 + b"</bpmn:definitions>"
    assert "10 XML elements" in _refusal(data).details[0]["message"]


@pytest.mark.parametrize(("data", "fragment"), [
    (b"", "empty"),
    (b"this is not xml", "not well-formed"),
    (b'<?xml version="1.0" encoding="UTF-8"?>\n' + BPMN_ROOT + b"\n<a>\xff\xfe</a></bpmn:definitions>", "encoding"),
    (b'<?xml version="1.0" encoding="x-unknown"?><a/>', "encoding"),
    (BPMN_ROOT + b"<bpmn:process>", "not well-formed"),
    (b"<definitions/>", "not a BPMN document"),
    (b'<svg xmlns="http://www.w3.org/2000/svg"/>', "<svg>"),
])
def test_bad_documents_get_a_clear_problem(data, fragment):
    problem = _refusal(data).details[0]
    assert fragment.lower() in problem["message"].lower()
    assert problem["file"] == "evil.bpmn"


def test_syntax_errors_report_the_line():
    data = b'<?xml version="1.0"?>\n' + BPMN_ROOT + b"\n\n<bpmn:process id='p'>\n</bpmn:definitions>"
    problem = _refusal(data).details[0]
    assert problem["line"] == 5


def test_dmn_files_need_a_dmn_root():
    with pytest.raises(DiagramRejected):
        parse_xml(fixture_files("minimal.bpmn")[0][1], file="table.dmn")
    root = parse_xml(fixture_files("decision.dmn")[0][1], file="decision.dmn")
    assert root.tag.endswith("definitions")


def test_other_encodings_parse():
    text = fixture_files("minimal.bpmn")[0][1].decode().replace("UTF-8", "UTF-16")
    root = parse_xml(text.encode("utf-16"), file="utf16.bpmn")
    assert root.find(".//{http://www.omg.org/spec/BPMN/20100524/MODEL}userTask").get("id") == "approve"
