"""The deploy stage's decisions and the smoke test's checks, without servers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from mlci import deployment
from mlci.context import StageContext
from mlci.errors import ConfigError
from mlci.stages import deploy


def test_slots_alternate():
    assert deployment.other_slot(None) == "blue"
    assert deployment.other_slot("blue") == "green"
    assert deployment.other_slot("green") == "blue"


@pytest.mark.parametrize(
    ("answer", "rows", "columns", "problem"),
    [
        ({"predictions": [0, 1, 2]}, 3, 1, None),
        ({"predictions": [0, 1, 2]}, 3, None, None),
        ({"predictions": [[0.1, 0.9], [0.8, 0.2]]}, 2, 2, None),
        ({"predictions": [0, 1]}, 3, 1, "2 predictions for 3 rows"),
        ({"predictions": [[0.1, 0.9]]}, 1, 1, "predictions have 2 columns"),
        ({"outputs": [0]}, 1, 1, "not MLflow's"),
    ],
)
def test_the_shape_check(answer, rows, columns, problem):
    found = deployment._shape_problem(json.dumps(answer).encode(), rows, columns)
    if problem is None:
        assert found is None
    else:
        assert problem in found


def test_percentiles_and_the_latency_verdict():
    values = [float(v) for v in range(1, 101)]
    assert deployment._percentile(values, 0.5) in (50.0, 51.0)
    assert deployment._percentile(values, 0.95) in (95.0, 96.0)
    assert math.isnan(deployment._percentile([], 0.95))
    smoke = deployment.Smoke(40, 0, 5, 3.0, 9.0, 500.0)
    assert smoke.passed
    assert "p95 9.0 ms (limit 500 ms)" in smoke.line()
    assert not deployment.Smoke(40, 1, 5, 3.0, 9.0, 500.0, ["HTTP 500: boom"]).passed


def _ctx(load, write_project, mlci: str = "", **overrides) -> tuple[StageContext, list[str]]:
    write_project(mlci)
    lines: list[str] = []
    return StageContext(load(overrides), log=lines.append), lines


def test_disabled_is_a_skip(load, write_project):
    ctx, _ = _ctx(load, write_project, **{"serving.deploy": "disabled"})
    with ctx:
        result = deploy.run(ctx)
    assert (result.status, result.summary) == ("skipped", "skipped: serving.deploy is disabled")


SEVERAL = """
[tool.mlci.models.a]
module = "a"
[tool.mlci.models.b]
module = "b"
"""


def test_several_models_without_serving_model(load, write_project):
    ctx, _ = _ctx(load, write_project, SEVERAL)
    with ctx:
        result = deploy.run(ctx)  # the pipeline's stage: a skip that says what to set
        assert result.status == "skipped"
        assert "serving.model" in result.summary
        with pytest.raises(ConfigError, match="several models"):
            deploy.deploy(ctx)  # by hand: the error


def test_the_pipeline_stage_starts_no_local_deployment(load, write_project, tmp_path):
    ctx, _ = _ctx(load, write_project)
    with ctx:
        result = deploy.run(ctx)
    assert result.status == "skipped"
    assert "invoke deploy" in result.summary
    assert not (tmp_path / ".mlci" / "serving").exists()


def test_a_proxy_url_needs_its_token(load, write_project):
    ctx, _ = _ctx(load, write_project, **{"serving.proxy_url": "http://model-serving:8000"})
    with ctx, pytest.raises(ConfigError, match="proxy_token"):
        deploy.run(ctx)


def test_process_slots_cannot_join_a_docker_network(load, write_project):
    write_project()
    settings = load({"serving.runtime": "process", "serving.network": "mlci_mlci"})
    with pytest.raises(ConfigError, match=r"serving\.network"):
        deployment.runtime(settings, lambda _line: None)


def test_the_local_token_is_private_and_stable(load, write_project, tmp_path):
    write_project()
    settings = load()
    first = deployment._token(settings, "m")
    path = tmp_path / ".mlci" / "serving" / "m" / "proxy.token"
    assert path.stat().st_mode & 0o777 == 0o600
    assert deployment._token(settings, "m") == first
    assert len(first) >= 32


def test_a_container_name_on_the_platform_network_is_what_prometheus_scrapes(load, write_project):
    write_project()
    assert deployment.container_name(load({"serving.network": "mlci_mlci"}), "m", "blue") == (
        "mlci-serving-blue"
    )
    assert deployment.container_name(load(), "m", "green") == "mlci-serving-m-green"
    scraped = (
        Path(__file__).resolve().parents[2] / "services" / "prometheus" / "prometheus.yml"
    ).read_text()
    assert "mlci-serving-blue:8000" in scraped and "mlci-serving-green:8000" in scraped
