"""Settings from the environment, exactly as documented: MESHES_* names in any case, keywords win."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from meshes_mcp.config import Settings

ORG = "6f1d2c3b-4a5e-4f60-8a7b-9c0d1e2f3a4b"


@pytest.fixture
def environ(monkeypatch):
    for name in list(__import__("os").environ):
        if name.upper().startswith("MESHES_") or name.upper() == "ORG_ID":
            monkeypatch.delenv(name)
    return monkeypatch


def test_every_setting_is_read_from_its_variable(environ):
    environ.setenv("MESHES_ACCESS_KEY", "mk_access")
    environ.setenv("MESHES_SECRET_KEY", "s" * 43)
    environ.setenv("MESHES_ORG_ID", ORG)
    environ.setenv("MESHES_API_URL", "https://api.example.com/")
    environ.setenv("MESHES_WORKSPACE_ID", "ws")
    environ.setenv("MESHES_PUBLISHABLE_KEY", "mesh_pub_x")
    environ.setenv("MESHES_TOOLSETS", "rules")
    environ.setenv("MESHES_READ_ONLY", "true")
    environ.setenv("MESHES_CONNECT_TIMEOUT", "1.5")
    environ.setenv("MESHES_READ_TIMEOUT", "7")
    settings = Settings()
    assert settings.access_key is not None and settings.access_key.get_secret_value() == "mk_access"
    assert settings.org_id == ORG and settings.base_url == "https://api.example.com/api/v1"
    assert (settings.workspace_id, settings.toolsets, settings.read_only) == ("ws", "rules", True)
    assert (settings.connect_timeout, settings.read_timeout) == (1.5, 7.0)
    assert settings.machine_key() is not None


def test_names_are_case_insensitive_and_the_org_id_has_its_long_alias(environ):
    environ.setenv("meshes_workspace_id", "lower")
    environ.setenv("MESHES_ORGANIZATION_ID", "from-long-name")
    assert Settings().workspace_id == "lower"
    assert Settings().org_id == "from-long-name"
    environ.setenv("MESHES_ORG_ID", "from-short-name")
    assert Settings().org_id == "from-short-name"  # the short name wins when both are set


@pytest.mark.parametrize(("text", "value"), [("TRUE", True), ("1", True), ("yes", True), ("off", False), ("0", False)])
def test_read_only_takes_the_usual_spellings(environ, text, value):
    environ.setenv("MESHES_READ_ONLY", text)
    assert Settings().read_only is value


def test_keywords_win_over_the_environment_and_blank_means_unset(environ):
    environ.setenv("MESHES_API_URL", "https://env.example.com")
    environ.setenv("MESHES_ORG_ID", "   ")
    environ.setenv("MESHES_WORKSPACE_ID", "")
    settings = Settings(api_url="https://flag.example.com")
    assert settings.api_url == "https://flag.example.com"
    assert settings.org_id is None and settings.workspace_id is None
    assert Settings(org_id=ORG).org_id == ORG


def test_a_bad_value_names_the_field(environ):
    environ.setenv("MESHES_READ_ONLY", "sometimes")
    with pytest.raises(ValidationError, match="read_only"):
        Settings()


def test_serving_stdio_does_not_import_what_only_other_paths_need():
    # The cold start is what an editor waits for: the sandbox, HTTP serving and token minting load on use.
    # (pydantic-settings is the configuration layer itself, so it is loaded here on purpose.)
    code = (
        "import sys\n"
        "from meshes_mcp.cli import settings_from\n"
        "from meshes_mcp.server.app import build_server\n"
        "build_server(settings_from({}))\n"
        "print(' '.join(m for m in ('jwt', 'sqlite3', 'meshes_mcp.sandbox',"
        " 'meshes_mcp.server.http', 'meshes_mcp.api.catalog') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env={})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == ""
