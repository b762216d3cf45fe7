"""What ships beside the code stays true: server.json, versions, the README marker, the examples."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import pytest

import meshes_mcp
from meshes_mcp.config import Settings

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT.parent / "shared" / "reference" / "server.schema.json"
SERVER_JSON = json.loads((ROOT / "server.json").read_text())
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.mark.skipif(not SCHEMA.exists(), reason="the registry schema is kept outside the repository")
def test_server_json_is_valid_against_the_registry_schema():
    jsonschema.validate(SERVER_JSON, json.loads(SCHEMA.read_text()))


def test_server_json_follows_the_registry_rules_the_schema_cannot_express():
    assert SERVER_JSON["name"] == "io.github.meshes-mcp/meshes-mcp"
    assert len(SERVER_JSON["description"]) <= 100
    assert SERVER_JSON["$schema"].endswith("/2025-12-11/server.schema.json")
    (package,) = SERVER_JSON["packages"]
    assert package["registryType"] == "pypi" and package["identifier"] == PYPROJECT["project"]["name"]
    assert package["runtimeHint"] == "uvx" and package["transport"] == {"type": "stdio"}
    # uvx runs the console script named like the package.
    assert "meshes-mcp" in PYPROJECT["project"]["scripts"]


def test_versions_agree_everywhere():
    version = PYPROJECT["project"]["version"]
    assert meshes_mcp.__version__ == version
    assert SERVER_JSON["version"] == version
    assert SERVER_JSON["packages"][0]["version"] == version


def test_readme_carries_the_registry_marker_with_a_boundary():
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"mcp-name: io\.github\.meshes-mcp/meshes-mcp(\s|-->|<|$)", readme)


def test_declared_environment_variables_are_the_ones_the_server_reads(monkeypatch):
    declared = {v["name"]: v for v in SERVER_JSON["packages"][0]["environmentVariables"]}
    for name in declared:
        monkeypatch.setenv(name, "true" if name == "MESHES_READ_ONLY" else "x" * 43)
    settings = Settings()
    read = {
        "MESHES_ACCESS_KEY": settings.access_key,
        "MESHES_SECRET_KEY": settings.secret_key,
        "MESHES_ORG_ID": settings.org_id,
        "MESHES_WORKSPACE_ID": settings.workspace_id,
        "MESHES_API_URL": settings.api_url,
        "MESHES_PUBLISHABLE_KEY": settings.publishable_key,
        "MESHES_TOOLSETS": settings.toolsets,
        "MESHES_READ_ONLY": settings.read_only,
    }
    assert set(declared) == set(read)
    assert all(read[name] for name in declared)
    secrets = {name for name, v in declared.items() if v.get("isSecret")}
    assert secrets == {"MESHES_ACCESS_KEY", "MESHES_SECRET_KEY", "MESHES_PUBLISHABLE_KEY"}


@pytest.mark.parametrize("name", ["claude_desktop_config.json", "cursor_mcp.json", "vscode_mcp.json"])
def test_client_examples_are_json_that_launch_meshes_mcp(name):
    config = json.loads((ROOT / "examples" / name).read_text())
    servers = config.get("mcpServers") or config.get("servers")
    assert servers["meshes"]["command"] == "uvx" and servers["meshes"]["args"][0] == "meshes-mcp"
    # Until the package is published: a clone's own executable, by absolute path, on the sandbox.
    from_clone = servers["meshes-sandbox-from-clone"]
    assert from_clone["command"].startswith("/") and from_clone["command"].endswith("/.venv/bin/meshes-mcp")
    assert from_clone["args"] == ["--sandbox"]


def test_python_example_drives_the_server_end_to_end():
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "drive_server.py")],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"status": "completed"' in done.stdout


def test_the_package_is_marked_typed_and_links_its_repository_and_changelog():
    from importlib.resources import files

    assert files("meshes_mcp").joinpath("py.typed").is_file()  # hatch ships every file under the package
    assert "Typing :: Typed" in PYPROJECT["project"]["classifiers"]
    urls = PYPROJECT["project"]["urls"]
    assert urls["Repository"] == SERVER_JSON["repository"]["url"]
    assert urls["Changelog"].endswith("/CHANGELOG.md") and (ROOT / "CHANGELOG.md").is_file()
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog and f"## [{PYPROJECT['project']['version']}]" in changelog
