"""A6: ``manage.py check --deploy`` is clean with production settings (and so is the schema)."""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    env = {**os.environ, "DEBUG": "0", "SECRET_KEY": secrets.token_urlsafe(64), "BATON_SECURE": "1",
           "ALLOWED_HOSTS": "baton.example.com", "BATON_VAR_DIR": str(tmp_path)}
    env.pop("DATABASE_URL", None)
    env.pop("DATABASE_OWNER_URL", None)
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues (0 silenced)" in result.stdout


def test_openapi_schema_validates_without_warnings(tmp_path):
    env = {**os.environ, "BATON_VAR_DIR": str(tmp_path)}
    env.pop("DATABASE_URL", None)
    env.pop("DATABASE_OWNER_URL", None)
    result = subprocess.run([sys.executable, "manage.py", "spectacular", "--validate", "--fail-on-warn",
                             "--file", str(tmp_path / "schema.yaml")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_docs_are_served_offline(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html and "cdn.jsdelivr" not in html and "unpkg" not in html
