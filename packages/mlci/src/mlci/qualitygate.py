"""The quality gate as code: its definition file and its local evaluation.

The definition (``sonarqube/quality-gate.toml``) holds SonarQube-shaped conditions:
metric key, operator (LT/GT) and error threshold. Locally the values come from the reports
the lint and test stages wrote; metrics only SonarQube computes are listed as not
evaluated, and never fail the local gate.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from mlci.errors import ConfigError
from mlci.reports import read_cobertura, read_json, read_junit

OPERATORS = {"LT": "<", "GT": ">"}
OK, ERROR, NO_VALUE = "OK", "ERROR", "NO_VALUE"


@dataclass(frozen=True)
class Condition:
    metric: str
    op: str
    error: float

    def fails(self, value: float) -> bool:
        return value < self.error if self.op == "LT" else value > self.error


@dataclass(frozen=True)
class GateDefinition:
    name: str
    conditions: tuple[Condition, ...]


@dataclass(frozen=True)
class ConditionResult:
    condition: Condition
    actual: float | None
    status: str


def load_definition(path: Path) -> GateDefinition:
    where = f"the quality-gate file {path}"
    if not path.is_file():
        raise ConfigError(
            f"{where} does not exist",
            "`invoke gate` reads its conditions from it",
            "create it (see sonarqube/quality-gate.toml in mlci) or set MLCI_GATE_FILE",
        )
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where} is not valid TOML", str(exc), "fix the syntax") from None
    name = data.get("name")
    raw_conditions = data.get("conditions")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(
            f"{where} has no name",
            "SonarQube addresses gates by name",
            'add a line such as name = "mlci"',
        )
    if not isinstance(raw_conditions, list) or not raw_conditions:
        raise ConfigError(
            f"{where} has no [[conditions]]",
            "a gate without conditions passes everything",
            "add at least one [[conditions]] table",
        )
    conditions = []
    for i, raw in enumerate(raw_conditions, 1):
        if not isinstance(raw, dict):
            raw = {"condition": raw}
        metric, op, error = raw.get("metric"), raw.get("op"), raw.get("error")
        if (
            not isinstance(metric, str)
            or op not in OPERATORS
            or not isinstance(error, int | float)
            or isinstance(error, bool)
        ):
            raise ConfigError(
                f"condition {i} in {where} is invalid: {raw!r}",
                "each condition needs metric (text), op (LT or GT) and error (a number)",
                'write it as: metric = "coverage", op = "LT", error = 80',
            )
        conditions.append(Condition(metric, op, float(error)))
    return GateDefinition(name.strip(), tuple(conditions))


def local_metrics(reports: Path) -> dict[str, float]:
    """The SonarQube metric values that the local reports let us compute."""
    values: dict[str, float] = {}
    junit_path, cobertura_path = reports / "junit.xml", reports / "coverage.xml"
    junit = read_junit(junit_path)
    values.update(
        tests=junit.tests,
        test_failures=junit.failures,
        test_errors=junit.errors,
        skipped_tests=junit.skipped,
        test_success_density=(
            100.0 * (junit.tests - junit.failures - junit.errors) / junit.tests
            if junit.tests
            else 100.0
        ),
    )
    if cobertura_path.is_file():
        cov = read_cobertura(cobertura_path)
        values.update(
            coverage=cov.coverage,
            line_coverage=cov.line_coverage,
            branch_coverage=cov.branch_coverage,
        )
    lint_path = reports / "lint.json"
    if lint_path.is_file():
        values["violations"] = float(read_json(lint_path, "lint")["findings"])
    return values


def evaluate(definition: GateDefinition, metrics: dict[str, float]) -> list[ConditionResult]:
    results = []
    for cond in definition.conditions:
        actual = metrics.get(cond.metric)
        status = NO_VALUE if actual is None else ERROR if cond.fails(actual) else OK
        results.append(ConditionResult(cond, actual, status))
    return results
