"""S1/S3 through the engine: runaway or hostile scripts end as incidents, quickly."""
from __future__ import annotations

import time

import pytest

from processes import services
from processes.models import Incident, InstanceStatus

from .conftest import ENGINE, upload

pytestmark = pytest.mark.django_db


def _deploy_script(tmp_path, key: str, script: str):
    source = (ENGINE / "failing_script.bpmn").read_text()
    text = source.replace("result = 10 / divisor", script).replace('id="failing_script"', f'id="{key}"')
    path = tmp_path / f"{key}.bpmn"
    path.write_text(text)
    return upload(path)


@pytest.mark.parametrize("key, script, error", [
    ("cpu_bomb", "while True:\n    counter = 1", "SandboxLimitExceeded"),
    ("memory_bomb", "blob = 'x'\nwhile True:\n    blob = blob + blob", "SandboxLimitExceeded"),
    ("range_bomb", "total = sum(range(10**12))", "SandboxLimitExceeded"),
    ("recursion_bomb", "def f(n):\n    return f(n + 1)\nresult = f(0)", "RecursionError"),
])
def test_runaway_scripts_end_as_incidents_within_seconds(tmp_path, alice, settings, key, script, error):
    settings.BATON_SCRIPT_WALL_SECONDS = 2.0
    _deploy_script(tmp_path, key, script)
    started = time.monotonic()
    instance = services.instance_start(process_key=key, actor=alice, data={"divisor": 1})
    assert time.monotonic() - started < 10
    assert instance.status == InstanceStatus.INCIDENT
    incident = Incident.objects.get(instance=instance)
    assert incident.element_id == "divide"
    assert error in incident.error_type + incident.message
    # the engine (and this process) still works afterwards
    healthy = _deploy_script(tmp_path, f"{key}_ok", "result = 10 / divisor")
    assert healthy
    ok = services.instance_start(process_key=f"{key}_ok", actor=alice, data={"divisor": 2})
    assert ok.status == InstanceStatus.WAITING and ok.data["result"] == 5
