import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from django.db import transaction
from bpmn.services import definition_upload
from core.errors import DiagramRejected
from tests.bpmn.test_fuzz import MUTATION, mutate, upload_set
from tests.bpmn.test_corpus import corpus_diagrams
SEEDS = corpus_diagrams()

@pytest.mark.django_db
@settings(max_examples=3000, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 10**6), mutations=st.lists(MUTATION, min_size=1, max_size=6))
def test_big(seed, mutations):
    diagram = SEEDS[seed % len(SEEDS)]
    files = upload_set(diagram)
    files[0] = (files[0][0], mutate(files[0][1], mutations))
    with transaction.atomic():
        try:
            definition_upload(files=files, uploaded_by=None)
        except DiagramRejected as exc:
            for problem in exc.details:
                assert problem["message"].strip(), problem
        transaction.set_rollback(True)
