"""The shipped examples and the README stay true to the code."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from fastapi.routing import APIRoute

from selfheal.api import create_app
from selfheal.api.ui import router as ui_router
from selfheal.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_example_config_loads() -> None:
    settings = load_settings(ROOT / "deploy/config/selfheal.example.yaml")
    assert settings.tracker.kind == "jira" and settings.tracker.jira is not None


def test_alertmanager_example_points_at_the_webhook() -> None:
    config = yaml.safe_load((ROOT / "deploy/alertmanager/alertmanager.yml").read_text())
    paths = create_app(load_settings(None, env="dev")).openapi()["paths"]
    receiver = next(r for r in config["receivers"] if r["name"] == config["route"]["receiver"])
    hook = receiver["webhook_configs"][0]
    assert hook["send_resolved"] is True
    assert hook["http_config"]["authorization"]["type"] == "Bearer"
    assert re.sub(r"^https?://[^/]+", "", hook["url"]) in paths


def test_readme_quickstart_and_endpoints() -> None:
    readme = (ROOT / "README.md").read_text()
    quickstart = readme.split("## Quickstart", 1)[1].split("##", 1)[0]
    commands = re.findall(r"^(make \w+)", quickstart, flags=re.M)
    assert commands == ["make demo", "make test"]

    def shape(path: str) -> str:
        return re.sub(r"\{[^}]*\}", "{}", path)

    served = {shape(p) for p in create_app(load_settings(None, env="dev")).openapi()["paths"]}
    # The web page's routes are left out of the OpenAPI document (they answer HTML, not JSON).
    served |= {shape(route.path) for route in ui_router.routes if isinstance(route, APIRoute)}
    documented = set(re.findall(r"`(?:GET|POST) (/[^`\s]+)`", readme))
    assert len(documented) >= 6
    for path in documented:
        assert shape(path) in served, f"README documents {path}, which the API does not serve"
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, flags=re.M) and re.search(r"^test:", makefile, flags=re.M)
