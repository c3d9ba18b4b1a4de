"""scan: the SonarQube analysis, with the test and lint reports of this run.

The scanner is pysonar (SonarSource's scanner on PyPI): it installs with the project's
other tools, needs no image registry, and fetches its engine from the SonarQube server
it reports to. The token travels in the scanner's environment (SONAR_TOKEN), never on
its command line. It is found beside the running interpreter before PATH (see
:func:`mlci.tools.find_program`), and every property goes to it as ``-Dkey=value``, the one
form its parser takes for any analysis property (``--sonar-qualitygate-wait`` is a flag
there and refuses a value).
"""

from __future__ import annotations

import os
from pathlib import Path

from mlci.clients.sonarqube import configured_server
from mlci.context import StageContext
from mlci.errors import ConfigError, StageFailed, ToolMissing
from mlci.lineage import git_info
from mlci.stages import PASSED, SKIPPED, StageResult
from mlci.tools import find_program
from mlci.tools import run as run_tool


def _relative(ctx: StageContext, path: Path) -> str:
    """Report paths relative to the project root, as SonarQube matches them to sources."""
    return os.path.relpath(path, ctx.settings.project_root)


def scan_properties(ctx: StageContext, host_url: str) -> dict[str, str]:
    settings = ctx.settings
    sonar = settings.sonar
    reports = ctx.reports
    junit, coverage, ruff = reports / "junit.xml", reports / "coverage.xml", reports / "ruff.json"
    missing = [p.name for p in (junit, coverage) if not p.is_file()]
    if missing:
        raise StageFailed(
            f"the scan needs {', '.join(missing)} in {reports}",
            "SonarQube shows tests and coverage from the reports of `invoke test`",
            "run `invoke test` first",
        )
    key = sonar.project_key or settings.project_root.name
    git = git_info(settings.project_root)
    props = {
        "sonar.host.url": host_url,
        "sonar.projectKey": key,
        "sonar.projectName": sonar.project_name or key,
        "sonar.projectBaseDir": str(settings.project_root),
        "sonar.sources": ",".join(sonar.sources),
        "sonar.tests": ",".join(sonar.tests),
        "sonar.python.version": "3.11",
        "sonar.python.coverage.reportPaths": _relative(ctx, coverage),
        "sonar.python.xunit.reportPath": _relative(ctx, junit),
        "sonar.working.directory": str(settings.scanner_work_path),
        "sonar.qualitygate.wait": "false",  # `invoke gate` polls, with its own timeout
    }
    if ruff.is_file():
        props["sonar.python.ruff.reportPaths"] = _relative(ctx, ruff)
    if git.sha != "unknown":
        props["sonar.scm.revision"] = git.sha
    if os.environ.get("BUILD_URL"):
        props["sonar.links.ci"] = os.environ["BUILD_URL"]
    if sonar.branch_analysis:
        if os.environ.get("CHANGE_ID"):  # a Jenkins multibranch pull-request build
            props["sonar.pullrequest.key"] = os.environ["CHANGE_ID"]
            props["sonar.pullrequest.branch"] = os.environ.get("CHANGE_BRANCH", "")
            props["sonar.pullrequest.base"] = os.environ.get("CHANGE_TARGET", "")
        elif os.environ.get("BRANCH_NAME"):
            props["sonar.branch.name"] = os.environ["BRANCH_NAME"]
    return props


def scanner_argv(scanner: list[str], props: dict[str, str]) -> list[str]:
    """The scanner's command line: each property as ``-Dkey=value``."""
    return [*scanner, *(f"-D{key}={value}" for key, value in props.items())]


def resolve_scanner(command: list[str]) -> list[str]:
    """The scanner command with its program resolved (beside this interpreter, then PATH)."""
    if not command:
        raise ConfigError(
            "sonar.scanner is empty",
            "the scan stage needs a scanner command to run",
            'set [tool.mlci.sonar] scanner (default ["pysonar"]) or MLCI_SONAR_SCANNER',
        )
    program = find_program(command[0])
    if program is None:
        import sys

        raise ToolMissing(
            f"the scanner {command[0]!r} is not installed",
            f"it is neither beside this Python ({os.path.dirname(sys.executable)}) nor on PATH",
            f"install it into this environment ({sys.executable} -m pip install 'mlci[scan]'), or "
            "set MLCI_SONAR_SCANNER to the scanner's full path",
        )
    return [program, *command[1:]]


def run(ctx: StageContext) -> StageResult:
    settings = ctx.settings
    server = configured_server(settings)
    if server is None:
        ctx.log("scan: skipped: no SonarQube configured (the gate is evaluated locally)")
        return StageResult("scan", SKIPPED, "skipped: no SonarQube configured")
    props = scan_properties(ctx, server.url)
    argv = scanner_argv(resolve_scanner(list(settings.sonar.scanner)), props)
    from mlci.clients.sonarqube import SonarQube

    SonarQube(server, settings.sonar.timeout).check_ready("scan")
    env = {**os.environ, "SONAR_TOKEN": server.token, "SONAR_HOST_URL": server.url}
    env.pop("SONAR_AUTH_TOKEN", None)
    ctx.log(f"scan: {argv[0]} for {props['sonar.projectKey']} on {server.url}")
    task_file = settings.scanner_work_path / "report-task.txt"
    task_file.unlink(missing_ok=True)  # never read a previous run's task
    proc = run_tool(argv, settings.project_root, env=env, timeout=3600)
    if proc.returncode != 0:
        raise StageFailed(
            f"the SonarQube scan failed (exit code {proc.returncode})",
            "the scanner's output is above",
            "fix the cause it names (often the token, the project key, or report paths)",
        )
    from mlci.clients.sonarqube import read_report_task

    task = read_report_task(task_file)
    details = {"ce_task_id": task["ceTaskId"], "dashboard": task.get("dashboardUrl", "")}
    links = {"SonarQube dashboard": task["dashboardUrl"]} if task.get("dashboardUrl") else {}
    return StageResult(
        "scan", PASSED, f"analysis {task['ceTaskId']} submitted", details=details, links=links
    )
