"""The Grafana dashboards against Grafana's own published schemas (no Grafana server exists here).

deploy/grafana/schema/ holds the JSON schemas Grafana publishes for its 11.6 line through
grafana-foundation-sdk (deploy/README.md, "Vendored files"): the dashboard, the panel plugins the
dashboards use (their `Options` and `FieldConfig`) and the Prometheus query. Every panel's
query is run against a live Prometheus by tests/test_prometheus_live.py. What stays untested
without a Grafana server: provisioning, rendering, the table transformations' output, the
variables' values in the UI (deploy/README.md).
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "deploy" / "grafana" / "schema"
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
PANEL_TYPES = {"table", "timeseries", "stat", "bargauge"}
DATASOURCE = {"type": "prometheus", "uid": "livepulse-prometheus"}


def without_required(schema: Any) -> Any:
    """The schema with every `required` dropped: Grafana fills a panel's missing options and
    field settings with the plugin's defaults when it loads the dashboard, so only the names,
    types and enums of what is written can be wrong."""
    if isinstance(schema, dict):
        return {k: without_required(v) for k, v in schema.items() if k != "required"}
    if isinstance(schema, list):
        return [without_required(item) for item in schema]
    return schema


@cache
def schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / f"{name}.jsonschema.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def validator(name: str, definition: str, *, required: bool = True) -> jsonschema.Validator:
    document = copy.deepcopy(schema(name))
    document["$ref"] = f"#/definitions/{definition}"
    if not required:
        document = without_required(document)
    jsonschema.Draft7Validator.check_schema(document)
    return jsonschema.Draft7Validator(document)


def dashboard_validator() -> jsonschema.Validator:
    """The dashboard schema, with the two things Grafana 11 itself writes for a Prometheus
    query variable allowed: `definition` (the query as text) and `query` as an object
    (`{"query": ..., "refId": ...}`; the generated schema wants every value of that object
    to be an object, a generator artefact of `query: string | {...}`)."""
    document = copy.deepcopy(schema("dashboard"))
    variable = document["definitions"]["VariableModel"]["properties"]
    assert "definition" not in variable, "the schema has `definition` now: drop this patch"
    variable["definition"] = {"type": "string"}
    string_form, object_form = variable["query"]["oneOf"]
    assert string_form == {"type": "string"} and object_form["type"] == "object"
    object_form["additionalProperties"] = {"type": "string"}
    jsonschema.Draft7Validator.check_schema(document)
    return jsonschema.Draft7Validator(document)


def problems(validator: jsonschema.Validator, instance: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '.'}: {error.message}"
        for error in validator.iter_errors(instance)
    ]


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_matches_grafanas_dashboard_schema(path: Path) -> None:
    dashboard = load(path)
    assert problems(dashboard_validator(), dashboard) == []
    # Not newer than 11.6's own (the schema's default, 41); older ones are migrated by Grafana
    # when it loads them, which cannot be run here.
    newest = schema("dashboard")["definitions"]["Dashboard"]["properties"]["schemaVersion"]
    assert dashboard["schemaVersion"] <= newest["default"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_panels_match_their_plugins_schemas(path: Path) -> None:
    found: list[str] = []
    query = validator("prometheus", "dataquery", required=False)
    for panel in load(path)["panels"]:
        kind = panel["type"]
        assert kind in PANEL_TYPES, f"{panel['title']}: no vendored schema for {kind}"
        where = f"{path.name} / {panel['title']}"
        options = validator(kind, "Options", required=False)
        found += [f"{where} options {p}" for p in problems(options, panel.get("options", {}))]
        if "FieldConfig" in schema(kind)["definitions"]:
            custom = panel.get("fieldConfig", {}).get("defaults", {}).get("custom", {})
            field = validator(kind, "FieldConfig", required=False)
            found += [f"{where} fieldConfig.defaults.custom {p}" for p in problems(field, custom)]
        assert panel.get("targets"), f"{where}: no query"
        for target in panel["targets"]:
            found += [f"{where} target {p}" for p in problems(query, target)]
            assert target.get("datasource", panel.get("datasource")) == DATASOURCE, where
    assert found == []


def test_the_schemas_catch_a_misspelled_option_and_a_wrong_type() -> None:
    """The checks above can fail: a typo in an option name and a string where a number goes."""
    (path, *_) = DASHBOARDS
    panel = next(p for p in load(path)["panels"] if p["type"] == "timeseries")
    broken = copy.deepcopy(panel)
    broken["options"]["legnd"] = broken["options"].pop("legend", {})
    assert any(
        "legnd" in p
        for p in problems(validator("timeseries", "Options", required=False), broken["options"])
    )
    dashboard = load(path)
    dashboard["refresh"] = 5
    dashboard["panels"][0]["gridPos"]["w"] = "wide"
    found = problems(dashboard_validator(), dashboard)
    assert any(p.startswith("refresh:") for p in found)
    assert any(p.startswith("panels/0") for p in found)
