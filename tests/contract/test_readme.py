"""The README's promises hold: two quick-start commands, CI runs the second, docs match code."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from mlci.settings import SPECS
from mlci.stages import PIPELINE_STAGES

pytestmark = pytest.mark.contract

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _first_shell_block() -> list[str]:
    match = re.search(r"^```(?:sh|bash|shell)\n(.*?)^```", README, re.S | re.M)
    assert match, "README.md has no shell code block"
    return match.group(1).splitlines()


def test_quick_start_block_holds_exactly_two_commands():
    lines = _first_shell_block()
    assert len(lines) == 2
    assert "invoke pipeline" in lines[0]
    assert "pytest" in lines[1]
    assert README.index("## Quick start") < README.index(lines[0])


def test_ci_runs_the_readmes_test_command():
    run = (ROOT / ".ci" / "run").read_text()
    assert "readme-command 2" in run
    printed = subprocess.run(
        ["bash", str(ROOT / ".ci" / "readme-command"), "2"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert printed == _first_shell_block()[1]


def test_every_setting_is_documented_with_its_variable():
    for key, spec in SPECS.items():
        assert f"| `{key}` | `{spec.env}` |" in README, f"{key} missing from the README table"


def test_every_stage_is_documented():
    for stage in (*PIPELINE_STAGES, "pipeline"):
        assert f"| {stage} | `invoke {stage}` |" in README


def test_the_benchmarks_table_shows_each_committed_result():
    """Each benchmarks/results/<name>.json has a row whose figure is the file's value."""
    import json

    section = README[README.index("## Benchmarks") : README.index("## Tests")]
    rows = {
        cells[1].strip("` "): cells
        for cells in (line.split("|") for line in section.splitlines() if line.startswith("| `"))
    }
    results = sorted((ROOT / "benchmarks" / "results").glob("*.json"))
    assert results
    for path in results:
        data = json.loads(path.read_text())
        assert data["name"] == path.stem
        assert {"value", "unit", "goal", "better", "runs", "machine", "date"} <= set(data)
        assert path.stem in rows, f"README's Benchmarks table has no row for {path.stem}"
        figure = f"{data['value']}\N{MULTIPLICATION SIGN}"
        assert rows[path.stem][4].strip().startswith(figure), path.stem
    for name in rows:
        assert (ROOT / "benchmarks" / f"{name}.py").is_file(), name
