"""SonarSource's real scanner ``pysonar`` against the SonarQube double.

``pysonar`` runs as a subprocess, exactly as a pipeline would run it; instead of a JRE and the
scanner engine JAR it runs ``tests/doubles/sonar_engine.py`` (``SONAR_SCANNER_JAVA_EXE_PATH``),
so nothing is downloaded and no Java is needed. What reaches the double is what pysonar and the
engine send: pysonar's ``GET api/v2/analysis/version`` (bearer token) and the engine's upload to
``api/ce/submit`` (token as the basic user).

The CI user is set up through the HTTP API the way an administrator would: the default
``sonar-users`` group loses Execute Analysis and Create Projects, the user is created with
``api/users/create``, gets Execute Analysis and Browse on its project only, and generates its
own project analysis token.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import requests
from sonarqube.rest import SonarQubeClient

from tests.doubles.sonarqube import AnalysisScenario, SonarQubeDouble

pytestmark = pytest.mark.integration

ENGINE = Path(__file__).resolve().parents[1] / "doubles" / "sonar_engine.py"
ADMIN = ("admin", "admin")
CI_LOGIN = "ci-bot"
CI_PASSWORD = "Ci-Bot-passw0rd!"
PROJECT = "wine-classifier"
SUBPROCESS_TIMEOUT = 90
FORBIDDEN = (
    "You're not authorized to analyze this project or the project doesn't exist on SonarQube "
    "and you're not authorized to create it. Please contact an administrator."
)
UNAUTHORIZED = (
    "Not authorized. Please check the user token in the property 'sonar.token' or the "
    "credentials in the properties 'sonar.login' and 'sonar.password'."
)


def pysonar_executable() -> str:
    beside = Path(sys.executable).with_name("pysonar")
    if beside.is_file():
        return str(beside)
    found = shutil.which("pysonar")
    if found is None:
        pytest.skip("pysonar is not installed next to this Python nor on PATH")
    return found


def api(
    sq: SonarQubeDouble, method: str, path: str, *, auth: Any = ADMIN, **kwargs: Any
) -> requests.Response:
    return requests.request(method, f"{sq.url}/{path}", auth=auth, timeout=10, **kwargs)


def ok(response: requests.Response, status: int = 200) -> requests.Response:
    assert response.status_code == status, (response.status_code, response.text)
    return response


def harden(sq: SonarQubeDouble) -> None:
    """What an administrator does first: new users may no longer scan or create projects."""
    for permission in ("scan", "provisioning"):
        ok(
            api(
                sq,
                "POST",
                "api/permissions/remove_group",
                data={"groupName": "sonar-users", "permission": permission},
            ),
            204,
        )


def create_user(sq: SonarQubeDouble, login: str, password: str) -> None:
    created = ok(
        api(
            sq,
            "POST",
            "api/users/create",
            data={"login": login, "name": login, "password": password},
        )
    )
    assert created.json()["user"]["login"] == login


def create_project(sq: SonarQubeDouble, visibility: str) -> None:
    ok(
        api(
            sq,
            "POST",
            "api/projects/create",
            data={"project": PROJECT, "name": "Wine classifier", "visibility": visibility},
        )
    )


@pytest.fixture
def scan_setup(tmp_path: Path) -> dict[str, Path]:
    """A small project (sources, coverage and JUnit reports) and pysonar's other inputs."""
    if not os.access(ENGINE, os.X_OK):  # git keeps the mode, but a checkout may lose it
        ENGINE.chmod(ENGINE.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    project = tmp_path / "project"
    (project / "src" / "wine").mkdir(parents=True)
    (project / "src" / "wine" / "__init__.py").write_text("")
    (project / "src" / "wine" / "model.py").write_text("def predict(x):\n    return x > 0\n")
    (project / "coverage.xml").write_text(
        '<?xml version="1.0" ?>\n<coverage version="7.6" line-rate="1" branch-rate="0">'
        '<sources><source>src</source></sources><packages><package name="wine">'
        '<classes><class name="model.py" filename="wine/model.py" line-rate="1">'
        '<lines><line number="1" hits="1"/><line number="2" hits="1"/></lines>'
        "</class></classes></package></packages></coverage>\n"
    )
    (project / "junit.xml").write_text(
        '<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" '
        'tests="1" failures="0" errors="0" skipped="0"><testcase classname="test_model" '
        'name="test_predict" time="0.001"/></testsuite></testsuites>\n'
    )
    jar = tmp_path / "sonar-scanner-engine.jar"
    jar.write_bytes(b"not a jar: the stand-in engine never reads it")
    return {"project": project, "jar": jar, "home": tmp_path / "sonar-home"}


def run_pysonar(
    sq: SonarQubeDouble, token: str, setup: dict[str, Path], *args: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SONAR")}
    env.update(
        SONAR_HOST_URL=sq.url,
        SONAR_TOKEN=token,
        SONAR_SCANNER_JAVA_EXE_PATH=str(ENGINE),
        SONAR_SCANNER_ENGINE_JAR_PATH=str(setup["jar"]),
        SONAR_USER_HOME=str(setup["home"]),
    )
    return subprocess.run(
        [pysonar_executable(), *args],
        cwd=setup["project"],
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )


SCAN_ARGS = (
    f"-Dsonar.projectKey={PROJECT}",
    "-Dsonar.sources=src",
    "-Dsonar.python.coverage.reportPaths=coverage.xml",
    "-Dsonar.python.xunit.reportPath=junit.xml",
    "-Dsonar.python.version=3.11",
)


def test_ci_user_scans_with_its_project_analysis_token(sonarqube, scan_setup):
    harden(sonarqube)
    create_user(sonarqube, CI_LOGIN, CI_PASSWORD)
    create_project(sonarqube, "private")
    ci = (CI_LOGIN, CI_PASSWORD)
    early = api(
        sonarqube,
        "POST",
        "api/user_tokens/generate",
        auth=ci,
        data={"name": "ci", "type": "PROJECT_ANALYSIS_TOKEN", "projectKey": PROJECT},
    )
    assert early.status_code == 403  # no Execute Analysis yet
    for permission in ("scan", "user"):
        ok(
            api(
                sonarqube,
                "POST",
                "api/permissions/add_user",
                data={"login": CI_LOGIN, "permission": permission, "projectKey": PROJECT},
            ),
            204,
        )
    generated = ok(
        api(
            sonarqube,
            "POST",
            "api/user_tokens/generate",
            auth=ci,
            data={"name": "ci", "type": "PROJECT_ANALYSIS_TOKEN", "projectKey": PROJECT},
        )
    ).json()
    token = generated["token"]
    assert (generated["login"], generated["type"]) == (CI_LOGIN, "PROJECT_ANALYSIS_TOKEN")
    sonarqube.queue_submission_scenario(
        AnalysisScenario(
            statuses=("IN_PROGRESS", "SUCCESS"),
            measures={
                "new_violations": 0,
                "new_coverage": 100.0,
                "new_duplicated_lines_density": 0.0,
                "new_security_hotspots_reviewed": 100,
            },
        )
    )

    result = run_pysonar(sonarqube, token, scan_setup, *SCAN_ARGS)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    out = result.stdout.splitlines()
    assert "INFO: Starting SonarScanner Engine..." in out
    assert "INFO: SonarScanner Engine completed successfully" in out
    coverage = scan_setup["project"] / "coverage.xml"
    assert f"INFO: Parsing report '{coverage}'" in out
    assert not any(line.startswith("WARNING: No report was found") for line in out)
    # What reached the double.
    (submission,) = sonarqube.submissions
    assert (submission.project_key, submission.login) == (PROJECT, CI_LOGIN)
    assert submission.token_type == "PROJECT_ANALYSIS_TOKEN"
    assert submission.fields == ("report",)
    assert submission.characteristics == {}
    assert submission.project_created is False
    with zipfile.ZipFile(io.BytesIO(submission.report)) as report:
        metadata = json.loads(report.read("metadata.json"))
    assert metadata["projectKey"] == PROJECT
    assert metadata["sources"] == ["src/wine/__init__.py", "src/wine/model.py"]
    version_calls = [r for r in sonarqube.requests if r.path == "api/v2/analysis/version"]
    assert [(r.status, r.login) for r in version_calls] == [(200, CI_LOGIN), (200, CI_LOGIN)]
    # report-task.txt, as the engine writes it.
    task_id = submission.task_id
    report_task = scan_setup["project"] / ".scannerwork" / "report-task.txt"
    assert report_task.read_text() == (
        f"projectKey={PROJECT}\n"
        f"serverUrl={sonarqube.url}\n"
        f"serverVersion={sonarqube.version}\n"
        f"dashboardUrl={sonarqube.url}/dashboard?id={PROJECT}\n"
        f"ceTaskId={task_id}\n"
        f"ceTaskUrl={sonarqube.url}/api/ce/task?id={task_id}\n"
    )
    # The CI reads the outcome with the same analysis token.
    headers = {"Authorization": f"Bearer {token}"}
    polls = [
        ok(
            api(sonarqube, "GET", "api/ce/task", auth=None, headers=headers, params={"id": task_id})
        ).json()["task"]
        for _ in range(2)
    ]
    assert [t["status"] for t in polls] == ["IN_PROGRESS", "SUCCESS"]
    assert polls[-1]["submitterLogin"] == CI_LOGIN
    status = ok(
        api(
            sonarqube,
            "GET",
            "api/qualitygates/project_status",
            auth=None,
            headers=headers,
            params={"analysisId": polls[-1]["analysisId"]},
        )
    ).json()["projectStatus"]
    assert status["status"] == "OK"
    assert {c["metricKey"] for c in status["conditions"]} == {
        "new_violations",
        "new_coverage",
        "new_duplicated_lines_density",
        "new_security_hotspots_reviewed",
    }
    # The second client sees the analysis in the project's activity.
    admin_client = SonarQubeClient(
        sonarqube_url=sonarqube.url, username="admin", password="admin", timeout=10
    )
    activity = admin_client.ce.search_tasks(component=PROJECT)["tasks"]
    assert [(t["id"], t["status"]) for t in activity] == [(task_id, "SUCCESS")]
    assert sonarqube.internal_errors == []


def test_missing_reports_are_warnings_and_a_missing_source_folder_fails(sonarqube, scan_setup):
    create_user(sonarqube, CI_LOGIN, CI_PASSWORD)  # default sonar-users: may scan and create
    token = ok(
        api(
            sonarqube,
            "POST",
            "api/user_tokens/generate",
            auth=(CI_LOGIN, CI_PASSWORD),
            data={"name": "ci", "type": "GLOBAL_ANALYSIS_TOKEN"},
        )
    ).json()["token"]
    (scan_setup["project"] / "coverage.xml").unlink()

    warned = run_pysonar(sonarqube, token, scan_setup, *SCAN_ARGS)
    missing = run_pysonar(
        sonarqube, token, scan_setup, f"-Dsonar.projectKey={PROJECT}", "-Dsonar.sources=lib"
    )

    assert warned.returncode == 0, warned.stdout + warned.stderr
    assert (
        "WARNING: No report was found for sonar.python.coverage.reportPaths using pattern "
        "coverage.xml"
    ) in warned.stdout.splitlines()
    (created,) = sonarqube.submissions
    assert created.project_created is True and created.token_type == "GLOBAL_ANALYSIS_TOKEN"
    assert missing.returncode == 1
    assert missing.stderr.splitlines() == [
        f"ERROR: Invalid value of sonar.sources for {PROJECT}",
        f"ERROR: The folder 'lib' does not exist for '{PROJECT}' (base directory = "
        f"{scan_setup['project']})",
    ]
    assert len(sonarqube.submissions) == 1


def test_a_user_without_execute_analysis_is_refused(sonarqube, scan_setup):
    harden(sonarqube)
    create_user(sonarqube, "viewer", "Viewer-passw0rd!")
    create_project(sonarqube, "public")
    admin_client = SonarQubeClient(
        sonarqube_url=sonarqube.url, username="admin", password="admin", timeout=10
    )
    token = admin_client.user_tokens.generate_user_token(name="scan", login="viewer")["token"]

    result = run_pysonar(sonarqube, token, scan_setup, *SCAN_ARGS)

    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.splitlines() == [f"ERROR: {FORBIDDEN}"]
    assert sonarqube.submissions == []
    assert [r.status for r in sonarqube.requests if r.path == "api/ce/submit"] == [403]
    assert not (scan_setup["project"] / ".scannerwork" / "report-task.txt").exists()


def test_an_unknown_token_is_refused_by_the_engine(sonarqube, scan_setup):
    result = run_pysonar(sonarqube, "sqp_" + "0" * 40, scan_setup, *SCAN_ARGS)

    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.splitlines() == [f"ERROR: {UNAUTHORIZED}"]
    # pysonar itself carries on: on a non-200 version answer it falls back to the
    # unauthenticated api/server/version.
    assert [(r.path, r.status) for r in sonarqube.requests] == [
        ("api/v2/analysis/version", 401),
        ("api/server/version", 200),
        ("api/v2/analysis/version", 401),
    ]


def test_pysonar_refuses_a_value_on_its_boolean_quality_gate_flag(sonarqube, scan_setup):
    # --sonar-qualitygate-wait is an argparse BooleanOptionalAction: it takes no value.
    refused = run_pysonar(
        sonarqube, "sqp_unused", scan_setup, *SCAN_ARGS, "--sonar-qualitygate-wait=false"
    )

    assert refused.returncode == 2
    assert refused.stderr.splitlines()[-1] == (
        "pysonar: error: argument --sonar-qualitygate-wait/--no-sonar-qualitygate-wait: "
        "ignored explicit argument 'false'"
    )
    assert sonarqube.requests == []

    # The spellings it accepts.
    create_user(sonarqube, CI_LOGIN, CI_PASSWORD)
    token = ok(
        api(
            sonarqube,
            "POST",
            "api/user_tokens/generate",
            auth=(CI_LOGIN, CI_PASSWORD),
            data={"name": "ci", "type": "GLOBAL_ANALYSIS_TOKEN"},
        )
    ).json()["token"]
    for spelling in ("--no-sonar-qualitygate-wait", "-Dsonar.qualitygate.wait=false"):
        accepted = run_pysonar(sonarqube, token, scan_setup, *SCAN_ARGS, spelling)
        assert accepted.returncode == 0, (spelling, accepted.stdout + accepted.stderr)
    assert len(sonarqube.submissions) == 2
