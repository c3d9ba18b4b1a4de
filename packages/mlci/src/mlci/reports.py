"""Reading the reports the stages write (JUnit XML, Cobertura XML, stage JSON files)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlci.errors import StageFailed


@dataclass(frozen=True)
class JUnitSummary:
    tests: int
    failures: int
    errors: int
    skipped: int
    failed_names: tuple[str, ...]

    @property
    def passed(self) -> int:
        return self.tests - self.failures - self.errors - self.skipped


@dataclass(frozen=True)
class CoverageSummary:
    lines_valid: int
    lines_covered: int
    branches_valid: int
    branches_covered: int

    @staticmethod
    def _pct(covered: int, valid: int) -> float:
        return 100.0 * covered / valid if valid else 100.0

    @property
    def line_coverage(self) -> float:
        return self._pct(self.lines_covered, self.lines_valid)

    @property
    def branch_coverage(self) -> float:
        return self._pct(self.branches_covered, self.branches_valid)

    @property
    def coverage(self) -> float:
        """Lines and branches together, as coverage.py's total and SonarQube's `coverage`."""
        return self._pct(
            self.lines_covered + self.branches_covered, self.lines_valid + self.branches_valid
        )


def _parse_xml(path: Path, what: str) -> ET.Element:
    if not path.is_file():
        raise StageFailed(
            f"the {what} report {path} does not exist",
            "the stage that writes it has not run, or it failed before writing",
            "run `invoke test` first",
        )
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise StageFailed(
            f"the {what} report {path} is not valid XML", str(exc), "run `invoke test` again"
        ) from None


def read_junit(path: Path) -> JUnitSummary:
    root = _parse_xml(path, "JUnit")
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    failed: list[str] = []
    for suite in suites:
        for key in totals:
            totals[key] += int(suite.get(key, 0))
        for case in suite.iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                failed.append(f"{case.get('classname', '')}::{case.get('name', '')}")
    return JUnitSummary(failed_names=tuple(failed), **totals)


def read_cobertura(path: Path) -> CoverageSummary:
    root = _parse_xml(path, "Cobertura coverage")
    return CoverageSummary(
        lines_valid=int(root.get("lines-valid", 0)),
        lines_covered=int(root.get("lines-covered", 0)),
        branches_valid=int(root.get("branches-valid", 0)),
        branches_covered=int(root.get("branches-covered", 0)),
    )


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    tmp.replace(path)
    return path


def read_json(path: Path, produced_by: str) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise StageFailed(
            f"{path} does not exist",
            f"it is written by `invoke {produced_by}`",
            f"run `invoke {produced_by}` first (in Jenkins: stash/unstash it between agents)",
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StageFailed(
            f"{path} is not valid JSON", str(exc), f"run `invoke {produced_by}` again"
        ) from None
    except IsADirectoryError:
        raise StageFailed(
            f"{path} is a folder, not the report",
            f"`invoke {produced_by}` writes a file there",
            "remove the folder and run the stage again",
        ) from None
    return data
