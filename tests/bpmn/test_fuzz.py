"""S7: mutated real diagrams are imported or refused with named problems, never a crash."""
from __future__ import annotations

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from bpmn.services import definition_upload
from core.errors import DiagramRejected

from .test_corpus import CORPUS, corpus_diagrams, upload_set

BPMN = "http://www.omg.org/spec/BPMN/20100524/MODEL"
SEEDS = corpus_diagrams()[::25]
TAGS = ["task", "userTask", "startEvent", "endEvent", "exclusiveGateway", "parallelGateway", "callActivity",
        "subProcess", "boundaryEvent", "sequenceFlow", "timerEventDefinition", "scriptTask", "process"]


def _elements(root):
    return [e for e in root.iter() if isinstance(e.tag, str)]


def _mutate_tree(root, kind: str, a: int, b: int, text: str) -> None:
    elements = _elements(root)
    element, other = elements[a % len(elements)], elements[b % len(elements)]
    flows = list(root.iter(f"{{{BPMN}}}sequenceFlow"))
    nodes = [e for e in elements if e.get("id") and e.getparent() is not None
             and etree.QName(e.getparent()).localname in ("process", "subProcess")]
    if kind == "drop_attribute" and element.attrib:
        del element.attrib[sorted(element.attrib)[b % len(element.attrib)]]
    elif kind == "dangling_ref" and flows:
        flows[a % len(flows)].set("targetRef" if b % 2 else "sourceRef", f"ghost_{b}")
    elif kind == "duplicate_id" and other.get("id"):
        element.set("id", other.get("id"))
    elif kind == "cycle" and nodes:
        source, target = nodes[a % len(nodes)], nodes[b % len(nodes)]
        flow = etree.SubElement(source.getparent(), f"{{{BPMN}}}sequenceFlow")
        flow.set("id", f"fuzz_flow_{a}_{b}")
        flow.set("sourceRef", source.get("id"))
        flow.set("targetRef", target.get("id"))
    elif kind == "delete" and element.getparent() is not None:
        element.getparent().remove(element)
    elif kind == "rename" and element.getparent() is not None:
        element.tag = f"{{{BPMN}}}{TAGS[b % len(TAGS)]}"
    elif kind == "text":
        try:
            element.text = text
        except ValueError:  # lxml refuses control characters: not a document anyone can upload
            pass


def mutate(data: bytes, mutations: list[tuple[str, int, int, str]]) -> bytes:
    """Apply tree mutations (on a parsed copy) and byte mutations (truncation, bad encodings)."""
    try:
        root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False))
    except etree.XMLSyntaxError:
        root = None
    for kind, a, b, text in mutations:
        if root is not None and kind not in ("truncate", "bad_bytes", "encoding"):
            _mutate_tree(root, kind, a, b, text)
    if root is not None:
        data = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    for kind, a, b, _text in mutations:
        if kind == "truncate":
            data = data[: a % (len(data) + 1)]
        elif kind == "bad_bytes":
            cut = a % (len(data) + 1)
            data = data[:cut] + b"\xff\xfe\xc3" + data[cut:]
        elif kind == "encoding":
            declared = ["latin-1", "UTF-16", "bogus", "UTF-32", "ascii"][b % 5]
            data = data.replace(b'encoding="UTF-8"', f'encoding="{declared}"'.encode(), 1)
    return data


MUTATION = st.tuples(
    st.sampled_from(["drop_attribute", "dangling_ref", "duplicate_id", "cycle", "delete", "rename", "text",
                     "truncate", "bad_bytes", "encoding"]),
    st.integers(0, 10**6), st.integers(0, 10**6), st.text(max_size=40),
)


def test_fuzz_has_seed_diagrams():
    assert CORPUS.is_dir() and len(SEEDS) >= 10, f"the corpus is missing at {CORPUS}"


@pytest.mark.django_db
@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                                   HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), target=st.integers(0, 10), mutations=st.lists(MUTATION, min_size=1, max_size=4))
def test_s7_mutated_diagrams_never_crash(seed, target, mutations):
    assert SEEDS, f"the corpus is missing at {CORPUS}"
    diagram = SEEDS[seed % len(SEEDS)]
    files = upload_set(diagram)
    xml = [i for i, (name, _) in enumerate(files) if not name.endswith(".json")]
    index = xml[target % len(xml)] if target % 3 == 0 else 0  # mostly the diagram, sometimes a DMN table
    files[index] = (files[index][0], mutate(files[index][1], mutations))
    with transaction.atomic():
        try:
            definitions = definition_upload(files=files, uploaded_by=None)
        except DiagramRejected as exc:
            assert exc.details, "a refusal lists its problems"
            for problem in exc.details:
                assert isinstance(problem["message"], str) and problem["message"].strip(), problem
        else:
            assert definitions and all(d.pk for d in definitions)
        transaction.set_rollback(True)
