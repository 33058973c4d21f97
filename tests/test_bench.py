"""The benchmark scenarios still run end to end (figures are measured by `make bench`, not here)."""
import pytest
from django.contrib.auth import get_user_model

from bench.scenarios import SCENARIOS, baton_run, raw_spiff_run
from bpmn.services import definition_upload


@pytest.mark.django_db
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario_completes_through_baton_and_raw_spiffworkflow(scenario):
    files = [(scenario.diagram.name, scenario.diagram.read_bytes())]
    files += [(p.name, p.read_bytes()) for p in scenario.diagram.parent.glob("*.json")]
    definition_upload(files=files, uploaded_by=None)
    User = get_user_model()
    requester, approver = User.objects.create_user("req"), User.objects.create_user("appr")
    statements: list[int] = []
    raw_spiff_run(scenario)()
    baton_run(scenario, requester, approver, statements)()
    assert all(count <= 10 for count in statements), statements
