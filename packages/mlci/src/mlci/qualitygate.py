"""The quality gate as code: its definition file and its local evaluation.

The definition (``sonarqube/quality-gate.toml``) holds SonarQube-shaped conditions:
metric key, operator (LT/GT) and error threshold. It is validated when it is read: a metric
SonarQube does not know (a typo such as ``coverge``) or an unknown key in a condition is an
error, never a condition silently dropped, and an operator must fit the metric's direction
(SonarQube refuses ``coverage GT``). Locally the values come from the reports the lint and
test stages wrote; metrics only SonarQube computes are named as such and never fail the
local gate. This gate is the one place coverage and findings limits live: the test stage
fails only on failing tests, the lint stage only reports findings.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass
from pathlib import Path

from mlci.errors import ConfigError
from mlci.reports import read_cobertura, read_json, read_junit

OPERATORS = {"LT": "<", "GT": ">"}
OK, ERROR, NO_VALUE = "OK", "ERROR", "NO_VALUE"
CONDITION_KEYS = frozenset({"metric", "op", "error"})

# SonarQube's metrics a gate condition may use, with the one operator that fits each:
# "LT" for those where higher is better, "GT" for those where higher is worse.
HIGHER_IS_BETTER = (
    "coverage",
    "new_coverage",
    "line_coverage",
    "new_line_coverage",
    "branch_coverage",
    "new_branch_coverage",
    "tests",
    "test_success_density",
    "security_hotspots_reviewed",
    "new_security_hotspots_reviewed",
)
HIGHER_IS_WORSE = (
    "test_failures",
    "test_errors",
    "skipped_tests",
    "violations",
    "new_violations",
    "blocker_violations",
    "new_blocker_violations",
    "critical_violations",
    "new_critical_violations",
    "major_violations",
    "new_major_violations",
    "minor_violations",
    "new_minor_violations",
    "info_violations",
    "new_info_violations",
    "bugs",
    "new_bugs",
    "vulnerabilities",
    "new_vulnerabilities",
    "code_smells",
    "new_code_smells",
    "duplicated_lines_density",
    "new_duplicated_lines_density",
    "duplicated_lines",
    "new_duplicated_lines",
    "duplicated_blocks",
    "new_duplicated_blocks",
    "reliability_rating",
    "new_reliability_rating",
    "security_rating",
    "new_security_rating",
    "sqale_rating",
    "new_maintainability_rating",
    "security_review_rating",
    "new_security_review_rating",
    "sqale_index",
    "new_technical_debt",
    "sqale_debt_ratio",
    "new_sqale_debt_ratio",
    "complexity",
    "cognitive_complexity",
    "ncloc",
    "security_hotspots",
)
METRIC_OPERATOR = {m: "LT" for m in HIGHER_IS_BETTER} | {m: "GT" for m in HIGHER_IS_WORSE}
# What the local reports let mlci compute (see local_metrics); the rest only SonarQube does.
LOCAL_METRICS = frozenset(
    {
        "tests",
        "test_failures",
        "test_errors",
        "skipped_tests",
        "test_success_density",
        "coverage",
        "line_coverage",
        "branch_coverage",
        "violations",
    }
)


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
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{where} is not UTF-8 text",
            f"byte {exc.start} cannot be decoded ({exc.reason}); TOML files are UTF-8",
            "save the file as UTF-8",
        ) from None
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
    unknown_top = sorted(set(data) - {"name", "conditions"})
    if unknown_top:
        raise ConfigError(
            f"{where} has unknown key(s): {', '.join(unknown_top)}",
            "a gate file holds a name and [[conditions]] only; anything else would be ignored",
            "remove them, or move them into a [[conditions]] table",
        )
    conditions = []
    for i, raw in enumerate(raw_conditions, 1):
        conditions.append(_condition(raw, f"condition {i} in {where}"))
    seen = [c.metric for c in conditions]
    twice = sorted({m for m in seen if seen.count(m) > 1})
    if twice:
        raise ConfigError(
            f"{where} has more than one condition on {', '.join(twice)}",
            "SonarQube allows one condition per metric in a gate",
            "keep one condition per metric",
        )
    return GateDefinition(name.strip(), tuple(conditions))


def _condition(raw: object, where: str) -> Condition:
    shape = 'write it as: metric = "coverage", op = "LT", error = 80'
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} is not a table: {raw!r}", "a condition is a table", shape)
    unknown = sorted(set(raw) - CONDITION_KEYS)
    if unknown:
        raise ConfigError(
            f"{where} has unknown key(s): {', '.join(unknown)}",
            "a condition has metric, op and error only; an unknown key would be ignored",
            shape,
        )
    metric, op, error = raw.get("metric"), raw.get("op"), raw.get("error")
    if (
        not isinstance(metric, str)
        or op not in OPERATORS
        or not isinstance(error, int | float)
        or isinstance(error, bool)
    ):
        raise ConfigError(
            f"{where} is invalid: {raw!r}",
            "each condition needs metric (text), op (LT or GT) and error (a number)",
            shape,
        )
    if metric not in METRIC_OPERATOR:
        close = difflib.get_close_matches(metric, list(METRIC_OPERATOR), n=1, cutoff=0.6)
        raise ConfigError(
            f"{where}: {metric!r} is not a metric a SonarQube gate knows",
            "a condition on an unknown metric would never be checked",
            f"did you mean {close[0]!r}?" if close else "use a SonarQube metric key",
        )
    if METRIC_OPERATOR[metric] != op:
        fits = METRIC_OPERATOR[metric]
        raise ConfigError(
            f"{where}: {metric} {op} {error:g} cannot fail the way it is meant to",
            f"for {metric} {'higher is better' if fits == 'LT' else 'lower is better'}: "
            f"SonarQube accepts only op = {fits!r} on it",
            f'write op = "{fits}"',
        )
    return Condition(metric, op, float(error))


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
