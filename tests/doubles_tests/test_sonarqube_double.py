"""Contract tests of the SonarQube double, driven by a client we did not write.

The ``python-sonarqube-api`` library (import name ``sonarqube``) covers user search, user tokens,
projects, part of the quality-gate API and ``api/ce/activity``; plain ``requests`` covers what it
lacks (system status, webhooks, gate creation and conditions, ``ce/task``, ``project_status``,
``users/create``, ``permissions/*``, ``ce/submit``, ``api/v2/analysis/version``). If the library
works against the double, the double answers the way SonarQube does for it. SonarSource's own
scanner runs against the double in ``test_pysonar_against_double.py``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from sonarqube.rest import SonarQubeClient
from sonarqube.utils.exceptions import AuthError, NotFoundError, ServerError, ValidationError

from tests.doubles.sonarqube import AnalysisScenario, SonarQubeDouble

pytestmark = pytest.mark.contract

ADMIN = ("admin", "admin")
NEW_ADMIN_PASSWORD = "Str0ng-Admin-Passw0rd!"


def call(
    sq: SonarQubeDouble,
    method: str,
    path: str,
    *,
    auth: Any = ADMIN,
    timeout: float = 5,
    **kwargs: Any,
) -> requests.Response:
    return requests.request(method, f"{sq.url}/{path}", auth=auth, timeout=timeout, **kwargs)


def library(sq: SonarQubeDouble, **credentials: Any) -> SonarQubeClient:
    if not credentials:
        credentials = {"username": "admin", "password": "admin"}
    return SonarQubeClient(sonarqube_url=sq.url, timeout=5, **credentials)


def assert_error(response: requests.Response, status: int, *messages: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"errors": [{"msg": m} for m in messages]}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def create_gate(sq: SonarQubeDouble, name: str, *conditions: tuple[str, str, str]) -> list[str]:
    assert call(sq, "POST", "api/qualitygates/create", data={"name": name}).status_code == 200
    ids = []
    for metric, op, error in conditions:
        response = call(
            sq,
            "POST",
            "api/qualitygates/create_condition",
            data={"gateName": name, "metric": metric, "op": op, "error": error},
        )
        assert response.status_code == 200, response.text
        ids.append(response.json()["id"])
    return ids


def poll(sq: SonarQubeDouble, task_id: str, times: int) -> list[dict[str, Any]]:
    answers = []
    for _ in range(times):
        response = call(sq, "GET", "api/ce/task", params={"id": task_id})
        assert response.status_code == 200, response.text
        answers.append(response.json()["task"])
    return answers


# ---------------------------------------------------------------------------------------------
# System status and authentication.


def test_status_sequence_is_played_in_order_without_authentication(sonarqube):
    sonarqube.set_status_sequence(["STARTING", "STARTING", "UP"])

    answers = [call(sonarqube, "GET", "api/system/status", auth=None) for _ in range(4)]

    assert [a.status_code for a in answers] == [200] * 4
    assert [a.json()["status"] for a in answers] == ["STARTING", "STARTING", "UP", "UP"]
    assert answers[0].json()["version"] == sonarqube.version
    assert set(answers[0].json()) == {"id", "version", "status"}
    assert answers[0].headers["Content-Type"] == "application/json"


def test_status_sequence_rejects_unknown_statuses(sonarqube):
    with pytest.raises(ValueError, match="unknown server status"):
        sonarqube.set_status_sequence(["BOOTING"])


def test_library_authenticates_with_login_and_password(sonarqube):
    client = library(sonarqube)

    assert client.auth.check_credentials() == {"valid": True}
    assert client.users.get_user("admin")["login"] == "admin"
    assert client.server.get_server_version() == sonarqube.version


def test_token_works_as_basic_user_and_as_bearer(sonarqube):
    generated = library(sonarqube).user_tokens.generate_user_token(name="ci")
    token = generated["token"]

    as_basic = library(sonarqube, token=token)
    assert as_basic.auth.check_credentials() == {"valid": True}
    assert as_basic.qualitygates.get_quality_gates()["qualitygates"][0]["name"] == "Sonar way"
    by_bearer = call(sonarqube, "GET", "api/qualitygates/list", auth=None, headers=bearer(token))
    assert by_bearer.status_code == 200
    validate = call(
        sonarqube, "GET", "api/authentication/validate", auth=None, headers=bearer(token)
    )
    assert validate.json() == {"valid": True}


def test_bad_token_gets_401_with_an_empty_body_and_validate_says_false(sonarqube):
    bad_bearer = call(
        sonarqube, "GET", "api/qualitygates/list", auth=None, headers=bearer("squ_" + "0" * 40)
    )
    assert bad_bearer.status_code == 401
    assert bad_bearer.content == b""
    assert "Content-Type" not in bad_bearer.headers

    bad_basic = call(sonarqube, "GET", "api/projects/search", auth=("squ_unknown", ""))
    assert (bad_basic.status_code, bad_basic.content) == (401, b"")
    anonymous = call(sonarqube, "GET", "api/projects/search", auth=None)
    assert (anonymous.status_code, anonymous.content) == (401, b"")

    with pytest.raises(AuthError, match=r"\[401\]"):
        library(sonarqube, token="squ_unknown").qualitygates.get_quality_gates()

    for credentials in (("admin", "wrong"), ("squ_unknown", ""), None):
        validate = call(sonarqube, "GET", "api/authentication/validate", auth=credentials)
        assert validate.status_code == 200
        assert validate.json() == {"valid": False}
    assert library(sonarqube, token="squ_unknown").auth.check_credentials() == {"valid": False}


def test_switch_makes_every_request_401(sonarqube):
    sonarqube.reject_all_requests = True

    for path in ("api/system/status", "api/authentication/validate", "api/qualitygates/list"):
        response = call(sonarqube, "GET", path)
        assert (response.status_code, response.content) == (401, b"")

    sonarqube.reject_all_requests = False
    assert call(sonarqube, "GET", "api/qualitygates/list").status_code == 200


def test_change_password_replaces_the_default_admin_password(sonarqube):
    assert sonarqube.default_admin_password_in_use

    wrong = call(
        sonarqube,
        "POST",
        "api/users/change_password",
        data={"login": "admin", "previousPassword": "nope", "password": NEW_ADMIN_PASSWORD},
    )
    # A servlet filter in SonarQube: its failures carry {"result": ...}, not {"errors": ...}.
    assert wrong.status_code == 400
    assert wrong.headers["Content-Type"] == "application/json"
    assert wrong.json() == {"result": "old_password_incorrect"}
    weak = call(
        sonarqube,
        "POST",
        "api/users/change_password",
        data={"login": "admin", "previousPassword": "admin", "password": "short"},
    )
    assert weak.json() == {"result": "Password must be at least 12 characters long"}
    assert sonarqube.default_admin_password_in_use

    changed = call(
        sonarqube,
        "POST",
        "api/users/change_password",
        data={"login": "admin", "previousPassword": "admin", "password": NEW_ADMIN_PASSWORD},
    )

    assert (changed.status_code, changed.content) == (204, b"")
    assert not sonarqube.default_admin_password_in_use
    assert sonarqube.check_password("admin", NEW_ADMIN_PASSWORD)
    # The factory credentials now fail like any bad credentials: 401, empty body.
    old = call(sonarqube, "GET", "api/qualitygates/list", auth=ADMIN)
    assert (old.status_code, old.content) == (401, b"")
    client = library(sonarqube, username="admin", password=NEW_ADMIN_PASSWORD)
    assert client.auth.check_credentials() == {"valid": True}


# ---------------------------------------------------------------------------------------------
# User tokens.


def test_token_value_is_returned_once_and_names_are_unique(sonarqube):
    tokens = library(sonarqube).user_tokens

    generated = tokens.generate_user_token(name="mlci-ci")
    assert generated["login"] == "admin"
    assert generated["name"] == "mlci-ci"
    assert generated["type"] == "USER_TOKEN"
    assert generated["token"].startswith("squ_")

    with pytest.raises(ValidationError, match="A user token for login 'admin' and name 'mlci-ci'"):
        tokens.generate_user_token(name="mlci-ci")

    listed = tokens.search_user_tokens()
    assert listed["login"] == "admin"
    assert [t["name"] for t in listed["userTokens"]] == ["mlci-ci"]
    assert "token" not in listed["userTokens"][0]
    assert generated["token"] not in str(listed)

    tokens.revoke_user_token(name="mlci-ci")
    assert tokens.search_user_tokens()["userTokens"] == []
    revoked = call(sonarqube, "GET", "api/qualitygates/list", auth=(generated["token"], ""))
    assert (revoked.status_code, revoked.content) == (401, b"")


def test_library_drops_the_token_type_so_analysis_tokens_need_plain_requests(sonarqube):
    # The library's generate_user_token has no `type` parameter: it is dropped silently.
    dropped = library(sonarqube).user_tokens.generate_user_token(
        name="typed", type="GLOBAL_ANALYSIS_TOKEN"
    )
    assert dropped["type"] == "USER_TOKEN"

    scan = call(
        sonarqube,
        "POST",
        "api/user_tokens/generate",
        data={"name": "scanner", "type": "GLOBAL_ANALYSIS_TOKEN"},
    )
    assert scan.status_code == 200
    assert scan.json()["token"].startswith("sqa_")
    missing_project = call(
        sonarqube,
        "POST",
        "api/user_tokens/generate",
        data={"name": "p", "type": "PROJECT_ANALYSIS_TOKEN"},
    )
    assert_error(
        missing_project, 400, "A projectKey is needed when creating Project Analysis Token"
    )
    bad_type = call(
        sonarqube, "POST", "api/user_tokens/generate", data={"name": "x", "type": "ROOT"}
    )
    assert_error(
        bad_type,
        400,
        "Value of parameter 'type' (ROOT) must be one of: "
        "[USER_TOKEN, GLOBAL_ANALYSIS_TOKEN, PROJECT_ANALYSIS_TOKEN]",
    )

    # An analysis token authenticates but cannot administer.
    headers = bearer(scan.json()["token"])
    assert call(sonarqube, "GET", "api/qualitygates/list", auth=None, headers=headers).ok
    create = call(
        sonarqube,
        "POST",
        "api/qualitygates/create",
        auth=None,
        headers=headers,
        data={"name": "nope"},
    )
    assert_error(create, 403, "Insufficient privileges")


def test_project_analysis_token_is_bound_to_its_project(sonarqube):
    projects = library(sonarqube).projects
    projects.create_project(project="demo", name="Demo")
    projects.create_project(project="other", name="Other")
    made = call(
        sonarqube,
        "POST",
        "api/user_tokens/generate",
        data={"name": "demo-scan", "type": "PROJECT_ANALYSIS_TOKEN", "projectKey": "demo"},
    )
    assert made.status_code == 200
    assert made.json()["token"].startswith("sqp_")
    assert made.json()["projectKey"] == "demo"
    task_id = sonarqube.submit_analysis("demo", gate_status="OK")
    other_task = sonarqube.submit_analysis("other")

    headers = bearer(made.json()["token"])
    task = call(sonarqube, "GET", "api/ce/task", auth=None, headers=headers, params={"id": task_id})
    assert task.status_code == 200
    sonarqube.finish_task(task_id)
    # Since 9.5 Execute Analysis on the project is enough to read its quality-gate status.
    status = call(
        sonarqube,
        "GET",
        "api/qualitygates/project_status",
        auth=None,
        headers=headers,
        params={"projectKey": "demo"},
    )
    assert status.status_code == 200, status.text
    assert status.json()["projectStatus"]["status"] == "OK"
    # ... but the token scans nothing else and administers nothing.
    for path, params in (
        ("api/qualitygates/project_status", {"projectKey": "other"}),
        ("api/ce/task", {"id": other_task}),
        ("api/qualitygates/get_by_project", {"project": "demo"}),
    ):
        refused = call(sonarqube, "GET", path, auth=None, headers=headers, params=params)
        assert_error(refused, 403, "Insufficient privileges")


# ---------------------------------------------------------------------------------------------
# Projects.


def test_project_create_duplicate_and_search_through_the_library(sonarqube):
    projects = library(sonarqube).projects

    created = projects.create_project(project="wine-classifier", name="Wine classifier")
    assert created == {
        "project": {
            "key": "wine-classifier",
            "name": "Wine classifier",
            "qualifier": "TRK",
            "visibility": "public",
        }
    }
    with pytest.raises(ValidationError, match='A similar key already exists: "wine-classifier"'):
        projects.create_project(project="wine-classifier", name="Again")

    found = projects.get_project("wine-classifier")
    assert found["name"] == "Wine classifier"
    page = projects.search_projects(projects="wine-classifier")
    assert page["paging"]["total"] == 1
    assert [c["key"] for c in page["components"]] == ["wine-classifier"]
    assert projects.get_project("absent") is None

    malformed = call(
        sonarqube, "POST", "api/projects/create", data={"project": "12345", "name": "digits"}
    )
    assert malformed.status_code == 400
    assert "Malformed key for Project: '12345'" in malformed.json()["errors"][0]["msg"]


# ---------------------------------------------------------------------------------------------
# Quality gates.


def test_gate_create_show_and_conditions(sonarqube):
    created = call(sonarqube, "POST", "api/qualitygates/create", data={"name": "mlci"})
    assert created.json() == {"name": "mlci"}
    duplicate = call(sonarqube, "POST", "api/qualitygates/create", data={"name": "mlci"})
    assert_error(duplicate, 400, "Name has already been taken")

    condition = call(
        sonarqube,
        "POST",
        "api/qualitygates/create_condition",
        data={"gateName": "mlci", "metric": "coverage", "op": "LT", "error": "60"},
    )
    assert condition.status_code == 200
    body = condition.json()
    assert {k: body[k] for k in ("metric", "op", "error")} == {
        "metric": "coverage",
        "op": "LT",
        "error": "60",
    }
    assert body["id"]

    unknown = call(
        sonarqube,
        "POST",
        "api/qualitygates/create_condition",
        data={"gateName": "mlci", "metric": "no_such_metric", "op": "GT", "error": "0"},
    )
    assert_error(unknown, 404, "There is no metric with key=no_such_metric")
    wrong_way = call(
        sonarqube,
        "POST",
        "api/qualitygates/create_condition",
        data={"gateName": "mlci", "metric": "violations", "op": "LT", "error": "0"},
    )
    assert_error(wrong_way, 400, "Operator LT is not allowed for this metric.")
    again = call(
        sonarqube,
        "POST",
        "api/qualitygates/create_condition",
        data={"gateName": "mlci", "metric": "coverage", "op": "LT", "error": "70"},
    )
    assert_error(again, 400, "Condition on metric 'Coverage' already exists.")

    updated = call(
        sonarqube,
        "POST",
        "api/qualitygates/update_condition",
        data={"id": body["id"], "metric": "coverage", "op": "LT", "error": "75"},
    )
    assert (updated.status_code, updated.content) == (204, b"")
    shown = call(sonarqube, "GET", "api/qualitygates/show", params={"name": "mlci"}).json()
    assert shown["name"] == "mlci"
    assert shown["isBuiltIn"] is False
    assert shown["conditions"] == [
        {"id": body["id"], "metric": "coverage", "op": "LT", "error": "75"}
    ]

    deleted = call(sonarqube, "POST", "api/qualitygates/delete_condition", data={"id": body["id"]})
    assert deleted.status_code == 204
    shown = call(sonarqube, "GET", "api/qualitygates/show", params={"name": "mlci"}).json()
    assert shown["conditions"] == []
    missing = call(sonarqube, "GET", "api/qualitygates/show", params={"name": "nope"})
    assert_error(missing, 404, "No quality gate has been found for name nope")


def test_gate_list_has_the_built_in_default_and_set_as_default_moves_it(sonarqube):
    gates = library(sonarqube).qualitygates

    listed = gates.get_quality_gates()["qualitygates"]
    assert [(g["name"], g["isDefault"], g["isBuiltIn"]) for g in listed] == [
        ("Sonar way", True, True)
    ]

    create_gate(sonarqube, "mlci", ("coverage", "LT", "60"))
    made_default = call(sonarqube, "POST", "api/qualitygates/set_as_default", data={"name": "mlci"})
    assert (made_default.status_code, made_default.content) == (204, b"")
    flags = {g["name"]: g["isDefault"] for g in gates.get_quality_gates()["qualitygates"]}
    assert flags == {"mlci": True, "Sonar way": False}


def test_select_answers_204_and_get_by_project_reports_it(sonarqube):
    client = library(sonarqube)
    client.projects.create_project(project="demo", name="Demo")
    create_gate(sonarqube, "mlci", ("coverage", "LT", "60"))

    before = call(sonarqube, "GET", "api/qualitygates/get_by_project", params={"project": "demo"})
    assert before.json() == {"qualityGate": {"name": "Sonar way", "default": True}}

    raw = call(
        sonarqube,
        "POST",
        "api/qualitygates/select",
        data={"gateName": "mlci", "projectKey": "demo"},
    )
    assert (raw.status_code, raw.content) == (204, b"")
    assert "Content-Type" not in raw.headers
    # The library hands back the empty body of a 204 as it is.
    assert not client.qualitygates.select_quality_gate_for_project(
        projectKey="demo", gateName="mlci"
    )

    after = call(sonarqube, "GET", "api/qualitygates/get_by_project", params={"project": "demo"})
    assert after.json() == {"qualityGate": {"name": "mlci", "default": False}}
    selected = client.qualitygates.get_qualitygate_projects(gateName="mlci")
    assert selected["results"] == [{"key": "demo", "name": "Demo", "selected": True}]
    assert sonarqube.project_gate("demo") == ("mlci", False)


def test_gate_id_alone_is_refused(sonarqube):
    library(sonarqube).projects.create_project(project="demo", name="Demo")
    create_gate(sonarqube, "mlci")

    select = call(
        sonarqube, "POST", "api/qualitygates/select", data={"gateId": "1", "projectKey": "demo"}
    )
    assert_error(select, 400, "The 'gateName' parameter is missing")
    condition = call(
        sonarqube,
        "POST",
        "api/qualitygates/create_condition",
        data={"gateId": "1", "metric": "coverage", "op": "LT", "error": "60"},
    )
    assert_error(condition, 400, "The 'gateName' parameter is missing")


def test_built_in_gate_cannot_be_modified(sonarqube):
    shown = call(sonarqube, "GET", "api/qualitygates/show", params={"name": "Sonar way"}).json()
    assert shown["isBuiltIn"] is True
    assert shown["conditions"]

    refused = call(
        sonarqube,
        "POST",
        "api/qualitygates/create_condition",
        data={"gateName": "Sonar way", "metric": "coverage", "op": "LT", "error": "60"},
    )
    assert_error(refused, 400, "Operation forbidden for built-in Quality Gate 'Sonar way'")
    delete = call(
        sonarqube,
        "POST",
        "api/qualitygates/delete_condition",
        data={"id": shown["conditions"][0]["id"]},
    )
    assert_error(delete, 400, "Operation forbidden for built-in Quality Gate 'Sonar way'")


# ---------------------------------------------------------------------------------------------
# Webhooks.


def test_webhooks_create_list_update_delete_never_show_the_secret(sonarqube):
    created = call(
        sonarqube,
        "POST",
        "api/webhooks/create",
        data={
            "name": "jenkins",
            "url": "http://jenkins:8080/sonarqube-webhook/",
            "secret": "s3cr3t-value",
        },
    )
    assert created.status_code == 200
    webhook = created.json()["webhook"]
    assert webhook == {
        "key": webhook["key"],
        "name": "jenkins",
        "url": "http://jenkins:8080/sonarqube-webhook/",
        "hasSecret": True,
    }

    listed = call(sonarqube, "GET", "api/webhooks/list")
    assert listed.json() == {"webhooks": [webhook]}
    assert "s3cr3t-value" not in listed.text

    updated = call(
        sonarqube,
        "POST",
        "api/webhooks/update",
        data={
            "webhook": webhook["key"],
            "name": "jenkins",
            "url": "http://jenkins:8080/sonarqube-webhook/",
        },
    )
    assert (updated.status_code, updated.content) == (204, b"")
    # Updating without `secret` drops it, as SonarQube's update action does.
    assert call(sonarqube, "GET", "api/webhooks/list").json()["webhooks"][0]["hasSecret"] is False

    deleted = call(sonarqube, "POST", "api/webhooks/delete", data={"webhook": webhook["key"]})
    assert deleted.status_code == 204
    assert call(sonarqube, "GET", "api/webhooks/list").json() == {"webhooks": []}
    gone = call(sonarqube, "POST", "api/webhooks/delete", data={"webhook": webhook["key"]})
    assert_error(gone, 404, f"No webhook with key '{webhook['key']}'")


def test_webhook_urls_are_validated(sonarqube):
    loopback = call(
        sonarqube,
        "POST",
        "api/webhooks/create",
        data={"name": "local", "url": "http://127.0.0.1:8080/hook"},
    )
    assert_error(
        loopback, 400, "Invalid URL: loopback and wildcard addresses are not allowed for webhooks."
    )
    not_a_url = call(
        sonarqube, "POST", "api/webhooks/create", data={"name": "bad", "url": "jenkins/hook"}
    )
    assert_error(not_a_url, 400, "Url parameter with value 'jenkins/hook' is not a valid url")


def test_project_webhooks_are_listed_per_project(sonarqube):
    library(sonarqube).projects.create_project(project="demo", name="Demo")
    call(
        sonarqube,
        "POST",
        "api/webhooks/create",
        data={"name": "per-project", "url": "http://ci.example/hook", "project": "demo"},
    )

    assert call(sonarqube, "GET", "api/webhooks/list").json() == {"webhooks": []}
    scoped = call(sonarqube, "GET", "api/webhooks/list", params={"project": "demo"}).json()
    assert [w["name"] for w in scoped["webhooks"]] == ["per-project"]


# ---------------------------------------------------------------------------------------------
# Compute Engine tasks and quality-gate status.


def test_ce_task_follows_its_scenario(sonarqube):
    task_id = sonarqube.submit_analysis("demo", ["PENDING", "IN_PROGRESS", "SUCCESS"])

    first, second, third, fourth = poll(sonarqube, task_id, 4)

    assert [t["status"] for t in (first, second, third, fourth)] == [
        "PENDING",
        "IN_PROGRESS",
        "SUCCESS",
        "SUCCESS",
    ]
    assert first["type"] == "REPORT"
    assert first["componentKey"] == "demo"
    assert first["submittedAt"]
    assert "analysisId" not in first
    assert "analysisId" not in second
    assert "startedAt" in second
    assert third["analysisId"] == fourth["analysisId"]
    assert "executedAt" in third
    assert "errorMessage" not in third

    activity = library(sonarqube).ce.search_tasks(component="demo")
    assert [t["id"] for t in activity["tasks"]] == [task_id]
    assert activity["tasks"][0]["status"] == "SUCCESS"


def test_ce_task_failed_reports_its_error_message(sonarqube):
    task_id = sonarqube.submit_analysis(
        "demo", AnalysisScenario.failing("Unsupported coverage report format")
    )

    running, failed, still = poll(sonarqube, task_id, 3)

    assert running["status"] == "IN_PROGRESS"
    assert failed["status"] == still["status"] == "FAILED"
    assert failed["errorMessage"] == "Unsupported coverage report format"
    assert "analysisId" not in failed


def test_ce_task_that_never_finishes(sonarqube):
    task_id = sonarqube.submit_analysis("demo", AnalysisScenario.never_finishing())

    statuses = [t["status"] for t in poll(sonarqube, task_id, 10)]

    assert statuses == ["PENDING"] + ["IN_PROGRESS"] * 9


def test_unknown_ce_task_is_404(sonarqube):
    response = call(sonarqube, "GET", "api/ce/task", params={"id": "AXnope"})
    assert_error(response, 404, "No activity found for task 'AXnope'")


def test_project_status_ok_for_a_passing_analysis(sonarqube):
    library(sonarqube).projects.create_project(project="demo", name="Demo")
    create_gate(sonarqube, "mlci", ("coverage", "LT", "60"), ("test_failures", "GT", "0"))
    call(
        sonarqube,
        "POST",
        "api/qualitygates/select",
        data={"gateName": "mlci", "projectKey": "demo"},
    )
    task_id = sonarqube.submit_analysis("demo", measures={"coverage": 87.5, "test_failures": 0})
    analysis_id = poll(sonarqube, task_id, 3)[-1]["analysisId"]

    status = call(
        sonarqube, "GET", "api/qualitygates/project_status", params={"analysisId": analysis_id}
    ).json()["projectStatus"]

    assert status["status"] == "OK"
    assert status["ignoredConditions"] is False
    assert status["conditions"] == [
        {
            "status": "OK",
            "metricKey": "coverage",
            "comparator": "LT",
            "errorThreshold": "60",
            "actualValue": "87.5",
        },
        {
            "status": "OK",
            "metricKey": "test_failures",
            "comparator": "GT",
            "errorThreshold": "0",
            "actualValue": "0",
        },
    ]
    by_key = call(
        sonarqube, "GET", "api/qualitygates/project_status", params={"projectKey": "demo"}
    )
    assert by_key.json()["projectStatus"] == status


def test_project_status_error_with_failing_conditions(sonarqube):
    task_id = sonarqube.submit_analysis(
        "demo",
        gate_status="ERROR",
        conditions=[
            {"metric": "coverage", "op": "LT", "error": "60", "value": "41.2"},
            {"metric": "violations", "op": "GT", "error": "0", "value": "0"},
        ],
    )
    sonarqube.finish_task(task_id)
    analysis_id = poll(sonarqube, task_id, 1)[0]["analysisId"]

    status = call(
        sonarqube, "GET", "api/qualitygates/project_status", params={"analysisId": analysis_id}
    ).json()["projectStatus"]

    assert status["status"] == "ERROR"
    failing = [c for c in status["conditions"] if c["status"] == "ERROR"]
    assert failing == [
        {
            "status": "ERROR",
            "metricKey": "coverage",
            "comparator": "LT",
            "errorThreshold": "60",
            "actualValue": "41.2",
        }
    ]


def test_project_status_errors(sonarqube):
    unknown = call(
        sonarqube, "GET", "api/qualitygates/project_status", params={"analysisId": "AXnope"}
    )
    assert_error(unknown, 404, "Analysis with id 'AXnope' is not found")
    neither = call(sonarqube, "GET", "api/qualitygates/project_status")
    assert_error(neither, 400, "Either 'analysisId', 'projectId' or 'projectKey' must be provided")
    library(sonarqube).projects.create_project(project="fresh", name="Fresh")
    never_analysed = call(
        sonarqube, "GET", "api/qualitygates/project_status", params={"projectKey": "fresh"}
    )
    assert never_analysed.json()["projectStatus"]["status"] == "NONE"


# ---------------------------------------------------------------------------------------------
# Error shapes, methods and privileges.


def test_error_body_shape_and_missing_parameter(sonarqube):
    response = call(sonarqube, "POST", "api/qualitygates/create")

    assert_error(response, 400, "The 'name' parameter is missing")
    with pytest.raises(ValidationError, match="The 'name' parameter is missing"):
        library(sonarqube).projects.create_project(project="demo", name="")
    with pytest.raises(NotFoundError, match="Project 'absent' not found"):
        library(sonarqube).qualitygates.select_quality_gate_for_project(
            projectKey="absent", gateName="Sonar way"
        )


def test_query_string_parameters_work_on_post(sonarqube):
    response = call(sonarqube, "POST", "api/qualitygates/create", params={"name": "from-query"})
    assert response.json() == {"name": "from-query"}


def test_json_bodies_are_not_read_as_parameters(sonarqube):
    # SonarQube's api/ actions read query and form parameters only.
    response = call(sonarqube, "POST", "api/qualitygates/create", json={"name": "from-json"})
    assert_error(response, 400, "The 'name' parameter is missing")


def test_get_on_a_post_only_endpoint_is_405(sonarqube):
    response = call(sonarqube, "GET", "api/qualitygates/create", params={"name": "x"})

    assert_error(response, 405, "HTTP method POST is required")
    assert sonarqube.mutation_count() == 0


def test_unknown_endpoint_is_404(sonarqube):
    response = call(sonarqube, "GET", "api/qualitygates/explode")
    assert_error(response, 404, "Unknown url : /api/qualitygates/explode")


def test_insufficient_privileges_answer_403(sonarqube):
    sonarqube.add_user("dev", "Dev-passw0rd!x")
    client = library(sonarqube, username="dev", password="Dev-passw0rd!x")

    assert client.auth.check_credentials() == {"valid": True}
    with pytest.raises(AuthError, match=r"\[403\]"):
        client.projects.search_projects()
    response = call(
        sonarqube,
        "POST",
        "api/qualitygates/create",
        auth=("dev", "Dev-passw0rd!x"),
        data={"name": "x"},
    )
    assert_error(response, 403, "Insufficient privileges")


# ---------------------------------------------------------------------------------------------
# Fault injection.


def test_injected_500s_then_recovery(sonarqube):
    sonarqube.fail_next("api/qualitygates/list", count=2)
    gates = library(sonarqube).qualitygates

    for _ in range(2):
        with pytest.raises(ServerError, match=r"\[500\]"):
            gates.get_quality_gates()
    assert gates.get_quality_gates()["qualitygates"]
    assert sonarqube.call_count("api/qualitygates/list") == 3

    sonarqube.fail_next("/api/system/status")
    failed = call(sonarqube, "GET", "api/system/status", auth=None)
    assert_error(failed, 500, "An error has occurred. Please contact your administrator")


def test_hang_is_cut_short_by_the_client_timeout(sonarqube):
    sonarqube.hang_next("api/system/status", seconds=3)

    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        call(sonarqube, "GET", "api/system/status", auth=None, timeout=0.3)
    assert time.monotonic() - started < 2

    assert call(sonarqube, "GET", "api/system/status", auth=None).json()["status"] == "UP"
    sonarqube.hang_next("api/qualitygates/list", seconds=3)
    slow = SonarQubeClient(
        sonarqube_url=sonarqube.url, username="admin", password="admin", timeout=0.3
    )
    with pytest.raises(requests.exceptions.ReadTimeout):
        slow.qualitygates.get_quality_gates()


# ---------------------------------------------------------------------------------------------
# Webhook deliveries.


def test_webhook_delivery_is_recorded_once_with_a_correct_hmac(sonarqube):
    library(sonarqube).projects.create_project(project="demo", name="Demo")
    library(sonarqube).projects.create_project(project="other", name="Other")
    create_gate(sonarqube, "mlci", ("coverage", "LT", "60"), ("violations", "GT", "0"))
    call(
        sonarqube,
        "POST",
        "api/qualitygates/select",
        data={"gateName": "mlci", "projectKey": "demo"},
    )
    secret = "webhook-secret-123"
    signed = call(
        sonarqube,
        "POST",
        "api/webhooks/create",
        data={"name": "jenkins", "url": "http://jenkins:8080/sonarqube-webhook/", "secret": secret},
    ).json()["webhook"]
    call(
        sonarqube,
        "POST",
        "api/webhooks/create",
        data={"name": "audit", "url": "http://audit.example/hook", "project": "demo"},
    )
    call(
        sonarqube,
        "POST",
        "api/webhooks/create",
        data={"name": "elsewhere", "url": "http://other.example/hook", "project": "other"},
    )
    task_id = sonarqube.submit_analysis(
        "demo",
        measures={"coverage": "55.0"},
        revision="0123abcd",
        properties={"sonar.analysis.buildNumber": "42", "sonar.login": "hidden"},
    )

    poll(sonarqube, task_id, 2)
    assert sonarqube.delivered_webhooks == []
    poll(sonarqube, task_id, 3)
    deliveries = sonarqube.delivered_webhooks

    assert [d.url for d in deliveries] == [
        "http://jenkins:8080/sonarqube-webhook/",
        "http://audit.example/hook",
    ]
    jenkins, audit = deliveries
    assert jenkins.webhook_key == signed["key"]
    assert jenkins.headers["X-SonarQube-Project"] == "demo"
    assert jenkins.headers["Content-Type"] == "application/json; charset=utf-8"
    expected = hmac.new(secret.encode(), jenkins.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(jenkins.headers["X-Sonar-Webhook-HMAC-SHA256"], expected)
    assert "X-Sonar-Webhook-HMAC-SHA256" not in audit.headers
    assert audit.body == jenkins.body

    payload = jenkins.json()
    analysis_id = poll(sonarqube, task_id, 1)[0]["analysisId"]
    assert payload["serverUrl"] == sonarqube.url
    assert payload["taskId"] == task_id
    assert payload["status"] == "SUCCESS"
    assert payload["analysedAt"] and payload["changedAt"]
    assert payload["revision"] == "0123abcd"
    assert payload["project"] == {
        "key": "demo",
        "name": "Demo",
        "url": f"{sonarqube.url}/dashboard?id=demo",
    }
    assert payload["qualityGate"]["name"] == "mlci"
    assert payload["qualityGate"]["status"] == "ERROR"
    assert payload["qualityGate"]["conditions"] == [
        {
            "metric": "coverage",
            "operator": "LESS_THAN",
            "value": "55.0",
            "status": "ERROR",
            "errorThreshold": "60",
        },
        {
            "metric": "violations",
            "operator": "GREATER_THAN",
            "status": "NO_VALUE",
            "errorThreshold": "0",
        },
    ]
    assert payload["properties"] == {"sonar.analysis.buildNumber": "42"}
    status = call(
        sonarqube, "GET", "api/qualitygates/project_status", params={"analysisId": analysis_id}
    ).json()
    assert status["projectStatus"]["status"] == "ERROR"


def test_failed_task_is_delivered_without_a_quality_gate(sonarqube):
    call(
        sonarqube,
        "POST",
        "api/webhooks/create",
        data={"name": "jenkins", "url": "http://jenkins:8080/sonarqube-webhook/"},
    )
    task_id = sonarqube.submit_analysis("demo", AnalysisScenario.failing("boom", polls_before=0))

    poll(sonarqube, task_id, 2)

    (delivery,) = sonarqube.delivered_webhooks
    assert delivery.json()["status"] == "FAILED"
    assert "qualityGate" not in delivery.json()


# ---------------------------------------------------------------------------------------------
# Counters and idempotency.


def wire(sq: SonarQubeDouble) -> None:
    """A small idempotent wiring written against the API: look first, change only what differs."""
    existing = {g["name"] for g in call(sq, "GET", "api/qualitygates/list").json()["qualitygates"]}
    if "mlci" not in existing:
        call(sq, "POST", "api/qualitygates/create", data={"name": "mlci"})
    conditions = call(sq, "GET", "api/qualitygates/show", params={"name": "mlci"}).json()[
        "conditions"
    ]
    if not any(c["metric"] == "coverage" for c in conditions):
        call(
            sq,
            "POST",
            "api/qualitygates/create_condition",
            data={"gateName": "mlci", "metric": "coverage", "op": "LT", "error": "60"},
        )
    if not library(sq).projects.get_project("demo"):
        call(sq, "POST", "api/projects/create", data={"project": "demo", "name": "Demo"})
    chosen = call(sq, "GET", "api/qualitygates/get_by_project", params={"project": "demo"})
    if chosen.json()["qualityGate"]["name"] != "mlci":
        call(sq, "POST", "api/qualitygates/select", data={"gateName": "mlci", "projectKey": "demo"})


def test_mutation_counters_show_that_a_rerun_changes_nothing(sonarqube):
    wire(sonarqube)
    first = sonarqube.mutation_counts
    state = sonarqube.snapshot()
    assert first == {
        "api/qualitygates/create": 1,
        "api/qualitygates/create_condition": 1,
        "api/projects/create": 1,
        "api/qualitygates/select": 1,
    }

    sonarqube.reset_counters()
    wire(sonarqube)

    assert sonarqube.mutation_count() == 0
    assert sonarqube.snapshot() == state
    assert sonarqube.call_count("api/qualitygates/list", "GET") == 1
    assert sonarqube.internal_errors == []


def test_failed_mutations_are_not_counted(sonarqube):
    call(sonarqube, "POST", "api/qualitygates/create", data={"name": "mlci"})
    call(sonarqube, "POST", "api/qualitygates/create", data={"name": "mlci"})

    assert sonarqube.mutation_count("api/qualitygates/create") == 1
    assert sonarqube.call_count("/api/qualitygates/create", "POST") == 2
    assert [r.status for r in sonarqube.requests] == [200, 400]


def test_concurrent_clients_see_consistent_state(sonarqube):
    def create(index: int) -> int:
        with requests.Session() as session:
            session.auth = ADMIN
            for n in range(5):
                response = session.post(
                    f"{sonarqube.url}/api/qualitygates/create",
                    data={"name": f"gate-{index}-{n}"},
                    timeout=5,
                )
                assert response.status_code == 200
            # Everybody races for the same name: exactly one wins.
            shared = session.post(
                f"{sonarqube.url}/api/qualitygates/create", data={"name": "shared"}, timeout=5
            )
            return shared.status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        shared_statuses = sorted(pool.map(create, range(8)))

    assert shared_statuses == [200] + [400] * 7
    assert sonarqube.mutation_count("api/qualitygates/create") == 8 * 5 + 1
    assert len(call(sonarqube, "GET", "api/qualitygates/list").json()["qualitygates"]) == 42
    assert sonarqube.internal_errors == []


# ---------------------------------------------------------------------------------------------
# Users, groups and permissions.

CI_PASSWORD = "Ci-Bot-passw0rd!"


def create_user(sq: SonarQubeDouble, login: str = "ci-bot", **fields: str) -> requests.Response:
    data = {"login": login, "name": "CI bot", "password": CI_PASSWORD, **fields}
    return call(sq, "POST", "api/users/create", data=data)


def grant(sq: SonarQubeDouble, login: str, permission: str, **scope: str) -> requests.Response:
    data = {"login": login, "permission": permission, **scope}
    return call(sq, "POST", "api/permissions/add_user", data=data)


def revoke_from_users_group(sq: SonarQubeDouble, *permissions: str) -> None:
    for permission in permissions:
        response = call(
            sq,
            "POST",
            "api/permissions/remove_group",
            data={"groupName": "sonar-users", "permission": permission},
        )
        assert (response.status_code, response.content) == (204, b"")


def test_users_create_makes_a_local_user_in_sonar_users(sonarqube):
    created = create_user(sonarqube, email="ci@example.com")

    assert created.status_code == 200
    assert created.json() == {
        "user": {
            "login": "ci-bot",
            "name": "CI bot",
            "email": "ci@example.com",
            "scmAccounts": [],
            "active": True,
            "local": True,
        }
    }
    # The second client sees the user, and the user logs in with the password.
    found = library(sonarqube).users.get_user("ci-bot")
    assert (found["login"], found["name"], found["local"]) == ("ci-bot", "CI bot", True)
    own = library(sonarqube, username="ci-bot", password=CI_PASSWORD)
    assert own.auth.check_credentials() == {"valid": True}
    # Like every new user it joins sonar-users, which a fresh SonarQube lets scan and create
    # projects; it administers nothing.
    assert sonarqube.effective_permissions("ci-bot") == {"scan", "provisioning"}
    gate = call(
        sonarqube,
        "POST",
        "api/qualitygates/create",
        auth=("ci-bot", CI_PASSWORD),
        data={"name": "nope"},
    )
    assert_error(gate, 403, "Insufficient privileges")

    again = create_user(sonarqube)
    assert_error(again, 400, "An active user with login 'ci-bot' already exists")
    assert sonarqube.mutation_count("api/users/create") == 1


@pytest.mark.parametrize(
    ("login", "message"),
    [
        ("a", "'login' length (1) is shorter than the minimum authorized (2)"),
        ("x" * 256, "'login' length (256) is longer than the maximum authorized (255)"),
        (".dot", "Login should start with _ or alphanumeric."),
        ("-dash", "Login should start with _ or alphanumeric."),
        ("ci bot", "Login should contain only letters, numbers, and .-_@"),
        ("ci#bot", "Login should contain only letters, numbers, and .-_@"),
    ],
)
def test_users_create_applies_the_login_rules(sonarqube, login, message):
    assert_error(create_user(sonarqube, login), 400, message)


def test_users_create_accepts_the_allowed_login_characters(sonarqube):
    for login in ("_svc", "ci.bot-2@corp", "x1"):
        assert create_user(sonarqube, login).json()["user"]["login"] == login


def test_users_create_parameter_errors(sonarqube):
    missing_password = call(
        sonarqube, "POST", "api/users/create", data={"login": "ci-bot", "name": "CI"}
    )
    assert_error(missing_password, 400, "Password is mandatory and must not be empty")
    external_with_password = create_user(sonarqube, local="false")
    assert_error(external_with_password, 400, "Password should only be set on local user")
    bad_boolean = create_user(sonarqube, local="maybe")
    assert_error(
        bad_boolean,
        400,
        "Value of parameter 'local' (maybe) must be one of: [true, false, yes, no]",
    )
    bad_email = create_user(sonarqube, email="not-an-email")
    assert_error(bad_email, 400, "Email 'not-an-email' is not valid")
    weak = create_user(sonarqube, password="short")
    assert_error(weak, 400, "Password must be at least 12 characters long")
    no_name = call(sonarqube, "POST", "api/users/create", data={"login": "ci", "password": "x"})
    assert_error(no_name, 400, "The 'name' parameter is missing")
    by_get = call(sonarqube, "GET", "api/users/create", params={"login": "x", "name": "x"})
    assert_error(by_get, 405, "HTTP method POST is required")
    assert sonarqube.mutation_count("api/users/create") == 0

    external = call(
        sonarqube,
        "POST",
        "api/users/create",
        data={"login": "ldap-user", "name": "LDAP", "local": "false"},
    )
    assert external.json()["user"]["local"] is False
    # No password is stored for an external user: basic authentication cannot succeed.
    denied = call(sonarqube, "GET", "api/authentication/validate", auth=("ldap-user", ""))
    assert denied.json() == {"valid": False}


def test_users_create_needs_administer_system(sonarqube):
    sonarqube.add_user("dev", "Dev-passw0rd!x", permissions={"gateadmin", "provisioning"})

    refused = call(
        sonarqube,
        "POST",
        "api/users/create",
        auth=("dev", "Dev-passw0rd!x"),
        data={"login": "x1", "name": "X", "password": CI_PASSWORD},
    )

    assert_error(refused, 403, "Insufficient privileges")
    assert library(sonarqube).users.get_user("x1") is None


def test_permissions_add_user_grants_global_and_project_permissions(sonarqube):
    revoke_from_users_group(sonarqube, "scan", "provisioning")
    create_user(sonarqube)
    library(sonarqube).projects.create_project(project="wine", name="Wine", visibility="private")
    assert sonarqube.effective_permissions("ci-bot") == set()
    # The default template lets sonar-users browse the new project.
    assert sonarqube.effective_permissions("ci-bot", "wine") == {"user", "codeviewer"}

    for permission, scope in (("gateadmin", {}), ("scan", {"projectKey": "wine"})):
        granted = grant(sonarqube, "ci-bot", permission, **scope)
        assert (granted.status_code, granted.content) == (204, b"")
        assert "Content-Type" not in granted.headers

    assert sonarqube.effective_permissions("ci-bot") == {"gateadmin"}
    assert sonarqube.effective_permissions("ci-bot", "wine") == {"user", "codeviewer", "scan"}
    gate = call(
        sonarqube,
        "POST",
        "api/qualitygates/create",
        auth=("ci-bot", CI_PASSWORD),
        data={"name": "by-ci"},
    )
    assert gate.status_code == 200

    removed = call(
        sonarqube,
        "POST",
        "api/permissions/remove_user",
        data={"login": "ci-bot", "permission": "gateadmin"},
    )
    assert removed.status_code == 204
    again = call(
        sonarqube,
        "POST",
        "api/qualitygates/create",
        auth=("ci-bot", CI_PASSWORD),
        data={"name": "by-ci-2"},
    )
    assert_error(again, 403, "Insufficient privileges")
    assert sonarqube.mutation_count("api/permissions/add_user") == 2


def test_permissions_add_user_errors(sonarqube):
    create_user(sonarqube)
    library(sonarqube).projects.create_project(project="wine", name="Wine", visibility="private")
    unknown_login = grant(sonarqube, "ghost", "scan")
    assert_error(unknown_login, 404, "User with login 'ghost' is not found'")
    # remove_user looks the user up before the project.
    removal = call(
        sonarqube,
        "POST",
        "api/permissions/remove_user",
        data={"login": "ghost", "permission": "scan", "projectKey": "absent"},
    )
    assert_error(removal, 404, "User with login 'ghost' is not found'")
    unknown_global = grant(sonarqube, "ci-bot", "browse")
    assert_error(
        unknown_global,
        400,
        "Invalid global permission 'browse'. Valid values are "
        "[admin, gateadmin, profileadmin, provisioning, scan]",
    )
    unknown_project_permission = grant(sonarqube, "ci-bot", "provisioning", projectKey="wine")
    assert_error(
        unknown_project_permission,
        400,
        "Invalid project permission 'provisioning'. Valid values are "
        "[admin, codeviewer, issueadmin, securityhotspotadmin, scan, user]",
    )
    unknown_project = grant(sonarqube, "ci-bot", "scan", projectKey="absent")
    assert_error(unknown_project, 404, "Entity not found")
    both = grant(sonarqube, "ci-bot", "scan", projectKey="wine", projectId="AXwhatever")
    assert_error(both, 400, "Project id or project key can be provided, not both.")
    no_login = call(sonarqube, "POST", "api/permissions/add_user", data={"permission": "scan"})
    assert_error(no_login, 400, "The 'login' parameter is missing")
    no_permission = call(sonarqube, "POST", "api/permissions/add_user", data={"login": "ci-bot"})
    assert_error(no_permission, 400, "The 'permission' parameter is missing")
    assert sonarqube.mutation_count() == 2  # users/create and projects/create only
    assert sonarqube.effective_permissions("ci-bot", "wine") == {"user", "codeviewer"}


def test_project_administrators_manage_project_permissions_only(sonarqube):
    library(sonarqube).projects.create_project(project="wine", name="Wine", visibility="private")
    sonarqube.add_user("lead", "Lead-passw0rd!x", project_permissions={"wine": {"admin"}})
    sonarqube.add_user("dev", "Dev-passw0rd!x")
    lead = ("lead", "Lead-passw0rd!x")

    on_project = call(
        sonarqube,
        "POST",
        "api/permissions/add_user",
        auth=lead,
        data={"login": "dev", "permission": "scan", "projectKey": "wine"},
    )
    assert on_project.status_code == 204
    assert sonarqube.effective_permissions("dev", "wine") == {"scan"}
    global_grant = call(
        sonarqube,
        "POST",
        "api/permissions/add_user",
        auth=lead,
        data={"login": "dev", "permission": "scan"},
    )
    assert_error(global_grant, 403, "Insufficient privileges")
    by_dev = call(
        sonarqube,
        "POST",
        "api/permissions/add_user",
        auth=("dev", "Dev-passw0rd!x"),
        data={"login": "dev", "permission": "admin", "projectKey": "wine"},
    )
    assert_error(by_dev, 403, "Insufficient privileges")

    def remove_own(permission: str) -> requests.Response:
        data = {"login": "lead", "permission": permission, "projectKey": "wine"}
        return call(sonarqube, "POST", "api/permissions/remove_user", auth=lead, data=data)

    assert_error(
        remove_own("user"),
        400,
        "Permission 'Browse' cannot be removed from a private project for a project administrator.",
    )
    assert_error(remove_own("admin"), 400, "As an admin, you can't remove your own admin right")
    assert sonarqube.effective_permissions("lead", "wine") == {"admin"}


def test_public_projects_browse_implicitly_and_keep_it(sonarqube):
    library(sonarqube).projects.create_project(project="demo", name="Demo")
    create_user(sonarqube)

    added = grant(sonarqube, "ci-bot", "user", projectKey="demo")
    assert added.status_code == 204  # implicitly done: nothing is stored
    assert sonarqube.effective_permissions("ci-bot", "demo") == set()
    assert sonarqube.group_permissions("sonar-administrators", "demo") == {
        "admin",
        "issueadmin",
        "securityhotspotadmin",
    }
    assert grant(sonarqube, "ci-bot", "issueadmin", projectKey="demo").status_code == 204
    assert sonarqube.effective_permissions("ci-bot", "demo") == {"issueadmin"}
    removed = call(
        sonarqube,
        "POST",
        "api/permissions/remove_user",
        data={"login": "ci-bot", "permission": "user", "projectKey": "demo"},
    )
    assert_error(removed, 400, "Permission user can't be removed from a public component")


def test_an_administrator_cannot_remove_their_own_admin_right(sonarqube):
    response = call(
        sonarqube,
        "POST",
        "api/permissions/remove_user",
        data={"login": "admin", "permission": "admin"},
    )
    assert_error(response, 400, "As an admin, you can't remove your own admin right")
    assert "admin" in sonarqube.effective_permissions("admin")


def test_groups_give_permissions_until_removed(sonarqube):
    assert sonarqube.group_permissions("sonar-users") == {"scan", "provisioning"}
    create_user(sonarqube)

    revoke_from_users_group(sonarqube, "scan")

    assert sonarqube.group_permissions("sonar-users") == {"provisioning"}
    assert sonarqube.effective_permissions("ci-bot") == {"provisioning"}
    readded = call(
        sonarqube,
        "POST",
        "api/permissions/add_group",
        data={"groupName": "sonar-users", "permission": "scan"},
    )
    assert readded.status_code == 204
    assert sonarqube.effective_permissions("ci-bot") == {"scan", "provisioning"}
    unknown = call(
        sonarqube,
        "POST",
        "api/permissions/add_group",
        data={"groupName": "devs", "permission": "scan"},
    )
    assert_error(unknown, 404, "No group with name 'devs'")
    to_anyone = call(
        sonarqube,
        "POST",
        "api/permissions/add_group",
        data={"groupName": "anyone", "permission": "gateadmin"},
    )
    assert to_anyone.status_code == 204
    assert "gateadmin" in sonarqube.effective_permissions("ci-bot")


# ---------------------------------------------------------------------------------------------
# Analysis tokens: who generates which, and what they read.


def ci_user_with_project_scan(sq: SonarQubeDouble, project: str = "wine") -> None:
    revoke_from_users_group(sq, "scan", "provisioning")
    create_user(sq)
    library(sq).projects.create_project(project=project, name=project, visibility="private")
    assert grant(sq, "ci-bot", "scan", projectKey=project).status_code == 204


def generate(sq: SonarQubeDouble, auth: Any, **data: str) -> requests.Response:
    return call(sq, "POST", "api/user_tokens/generate", auth=auth, data=data)


def test_only_the_owner_generates_a_project_analysis_token(sonarqube):
    ci_user_with_project_scan(sonarqube)

    for_other = generate(
        sonarqube,
        ADMIN,
        name="ci",
        login="ci-bot",
        type="PROJECT_ANALYSIS_TOKEN",
        projectKey="wine",
    )
    assert_error(for_other, 400, "A Project Analysis Token cannot be generated for another user.")
    global_for_other = generate(
        sonarqube, ADMIN, name="ci", login="ci-bot", type="GLOBAL_ANALYSIS_TOKEN"
    )
    assert_error(
        global_for_other, 400, "A Global Analysis Token cannot be generated for another user."
    )
    own = generate(
        sonarqube,
        ("ci-bot", CI_PASSWORD),
        name="ci",
        type="PROJECT_ANALYSIS_TOKEN",
        projectKey="wine",
    )
    assert own.status_code == 200
    assert (own.json()["login"], own.json()["projectKey"]) == ("ci-bot", "wine")
    # An administrator may still make a plain user token for somebody else (second client).
    user_token = library(sonarqube).user_tokens.generate_user_token(name="plain", login="ci-bot")
    assert (user_token["login"], user_token["type"]) == ("ci-bot", "USER_TOKEN")
    listed = library(sonarqube).user_tokens.search_user_tokens(login="ci-bot")["userTokens"]
    assert [(t["name"], t["type"], t.get("project")) for t in listed] == [
        ("ci", "PROJECT_ANALYSIS_TOKEN", {"key": "wine", "name": "wine"}),
        ("plain", "USER_TOKEN", None),
    ]


def test_a_project_analysis_token_needs_scan_on_the_project_or_globally(sonarqube):
    revoke_from_users_group(sonarqube, "scan", "provisioning")
    create_user(sonarqube)
    library(sonarqube).projects.create_project(project="wine", name="Wine")
    ci = ("ci-bot", CI_PASSWORD)

    without = generate(sonarqube, ci, name="t1", type="PROJECT_ANALYSIS_TOKEN", projectKey="wine")
    assert_error(without, 403, "Insufficient privileges")
    unknown = generate(sonarqube, ci, name="t1", type="PROJECT_ANALYSIS_TOKEN", projectKey="nope")
    assert_error(unknown, 404, "Project key 'nope' not found")
    assert grant(sonarqube, "ci-bot", "scan").status_code == 204  # global Execute Analysis
    with_global = generate(
        sonarqube, ci, name="t1", type="PROJECT_ANALYSIS_TOKEN", projectKey="wine"
    )
    assert with_global.status_code == 200
    ghost = generate(sonarqube, ADMIN, name="t", login="ghost")
    assert_error(ghost, 404, "User with login 'ghost' doesn't exist")
    with pytest.raises(NotFoundError, match="User with login 'ghost' doesn't exist"):
        library(sonarqube).user_tokens.search_user_tokens(login="ghost")


def test_project_status_accepts_browse_or_execute_analysis(sonarqube):
    ci_user_with_project_scan(sonarqube)
    library(sonarqube).projects.create_project(project="other", name="Other", visibility="private")
    task_id = sonarqube.submit_analysis("wine", gate_status="ERROR")
    sonarqube.finish_task(task_id)
    project_token = generate(
        sonarqube,
        ("ci-bot", CI_PASSWORD),
        name="p",
        type="PROJECT_ANALYSIS_TOKEN",
        projectKey="wine",
    ).json()["token"]
    sonarqube.add_user("scanner", "Scan-passw0rd!x", permissions={"scan"})
    global_token = generate(
        sonarqube, ("scanner", "Scan-passw0rd!x"), name="g", type="GLOBAL_ANALYSIS_TOKEN"
    ).json()["token"]
    sonarqube.add_user("stranger", "Stranger-passw0rd!x")

    def status(project: str, **auth: Any) -> requests.Response:
        return call(
            sonarqube,
            "GET",
            "api/qualitygates/project_status",
            params={"projectKey": project},
            **auth,
        )

    for allowed in (
        {"auth": ("ci-bot", CI_PASSWORD)},  # Browse (sonar-users, by the template) and scan
        {"auth": None, "headers": bearer(project_token)},  # scan on its project
        {"auth": None, "headers": bearer(global_token)},  # global Execute Analysis
        {"auth": ("scanner", "Scan-passw0rd!x")},
    ):
        answer = status("wine", **allowed)
        assert answer.status_code == 200, (allowed, answer.text)
        assert answer.json()["projectStatus"]["status"] == "ERROR"
    assert status("other", auth=None, headers=bearer(global_token)).status_code == 200
    assert_error(
        status("other", auth=None, headers=bearer(project_token)), 403, "Insufficient privileges"
    )
    assert_error(
        status("wine", auth=("stranger", "Stranger-passw0rd!x")), 403, "Insufficient privileges"
    )


# ---------------------------------------------------------------------------------------------
# What pysonar and the scanner engine call.


def test_v2_analysis_version_needs_authentication_only(sonarqube):
    sonarqube.add_user("nobody", "Nobody-passw0rd!x")
    token = library(sonarqube).user_tokens.generate_user_token(name="t", login="nobody")["token"]

    answer = call(sonarqube, "GET", "api/v2/analysis/version", auth=None, headers=bearer(token))

    assert answer.status_code == 200
    assert answer.text == sonarqube.version
    assert answer.headers["Content-Type"] == "text/plain;charset=UTF-8"
    anonymous = call(sonarqube, "GET", "api/v2/analysis/version", auth=None)
    assert (anonymous.status_code, anonymous.content) == (401, b"")
    bad = call(sonarqube, "GET", "api/v2/analysis/version", auth=None, headers=bearer("sqp_x"))
    assert (bad.status_code, bad.content) == (401, b"")
    posted = call(sonarqube, "POST", "api/v2/analysis/version")
    assert posted.status_code == 405


def submit(
    sq: SonarQubeDouble,
    project_key: str | None = "wine",
    *,
    report: bytes | None = b"PK\x03\x04 not really a zip",
    params: Any = None,
    **kwargs: Any,
) -> requests.Response:
    query = [] if project_key is None else [("projectKey", project_key)]
    query += list(params or [])
    files = {"report": (None, report, "application/zip")} if report is not None else None
    return call(sq, "POST", "api/ce/submit", params=query, files=files, **kwargs)


def test_ce_submit_queues_a_task_that_follows_the_queued_scenario(sonarqube):
    ci_user_with_project_scan(sonarqube)
    token = generate(
        sonarqube,
        ("ci-bot", CI_PASSWORD),
        name="p",
        type="PROJECT_ANALYSIS_TOKEN",
        projectKey="wine",
    ).json()["token"]
    sonarqube.queue_submission_scenario(AnalysisScenario.failing("Unsupported report"))
    sonarqube.queue_submission_scenario(["SUCCESS"], gate_status="OK")
    basic_token = (token, "")  # how the scanner engine sends a token

    first = submit(
        sonarqube,
        auth=basic_token,
        params=[("characteristic", "branch=main"), ("characteristic", "branchType=BRANCH")],
    )
    second = submit(sonarqube, auth=None, headers=bearer(token))
    third = submit(sonarqube, auth=basic_token)

    assert [r.status_code for r in (first, second, third)] == [200, 200, 200]
    assert first.headers["Content-Type"] == "application/json"
    assert set(first.json()) == {"taskId", "projectId"}
    project = next(p for p in library(sonarqube).projects.search_projects()["components"])
    assert project["key"] == "wine"
    records = sonarqube.submissions
    assert [s.task_id for s in records] == [r.json()["taskId"] for r in (first, second, third)]
    assert records[0].project_key == "wine" and records[0].login == "ci-bot"
    assert records[0].token_type == "PROJECT_ANALYSIS_TOKEN"
    assert records[0].fields == ("report",)
    assert records[0].characteristics == {"branch": "main", "branchType": "BRANCH"}
    assert records[0].report == b"PK\x03\x04 not really a zip"
    assert records[0].project_created is False

    failed = poll(sonarqube, first.json()["taskId"], 2)
    assert [t["status"] for t in failed] == ["IN_PROGRESS", "FAILED"]
    assert failed[-1]["errorMessage"] == "Unsupported report"
    assert failed[-1]["submitterLogin"] == "ci-bot"
    (succeeded,) = poll(sonarqube, second.json()["taskId"], 1)
    assert succeeded["status"] == "SUCCESS" and succeeded["componentKey"] == "wine"
    # An empty queue means the default scenario.
    assert [t["status"] for t in poll(sonarqube, third.json()["taskId"], 3)] == [
        "PENDING",
        "IN_PROGRESS",
        "SUCCESS",
    ]
    activity = library(sonarqube).ce.search_tasks(component="wine")
    assert len(activity["tasks"]) == 3
    assert sonarqube.mutation_count("api/ce/submit") == 3


def test_ce_submit_permissions(sonarqube):
    revoke_from_users_group(sonarqube, "scan", "provisioning")
    create_user(sonarqube)
    library(sonarqube).projects.create_project(project="wine", name="Wine")
    ci = ("ci-bot", CI_PASSWORD)

    assert_error(submit(sonarqube, auth=ci), 403, "Insufficient privileges")
    assert_error(submit(sonarqube, "new-one", auth=ci), 403, "Insufficient privileges")
    assert grant(sonarqube, "ci-bot", "scan", projectKey="wine").status_code == 204
    assert submit(sonarqube, auth=ci).status_code == 200
    # A new project needs Create Projects and global Execute Analysis.
    assert grant(sonarqube, "ci-bot", "provisioning").status_code == 204
    assert_error(submit(sonarqube, "new-one", auth=ci), 403, "Insufficient privileges")
    assert grant(sonarqube, "ci-bot", "scan").status_code == 204
    created = submit(sonarqube, "new-one", auth=ci, params=[("projectName", "New One")])
    assert created.status_code == 200
    assert sonarqube.submissions[-1].project_created is True
    found = library(sonarqube).projects.search_projects(projects="new-one")["components"]
    assert [(p["key"], p["name"], p["visibility"]) for p in found] == [
        ("new-one", "New One", "public")
    ]
    assert created.json()["projectId"] != ""
    malformed = submit(sonarqube, "123", auth=ci)
    assert_error(
        malformed,
        400,
        "Malformed key for Project: '123'. Allowed characters are alphanumeric, '-', '_', '.' "
        "and ':', with at least one non-digit.",
    )
    assert len(sonarqube.submissions) == 2


def test_ce_submit_default_instance_lets_any_new_user_scan_and_provision(sonarqube):
    create_user(sonarqube)

    created = submit(sonarqube, "fresh", auth=("ci-bot", CI_PASSWORD))

    assert created.status_code == 200
    assert sonarqube.submissions[0].project_created is True


def test_ce_submit_parameter_errors(sonarqube):
    no_key = submit(sonarqube, None)
    assert_error(no_key, 400, "The 'projectKey' parameter is missing")
    no_report = submit(sonarqube, report=None)
    assert_error(no_report, 400, "The 'report' parameter is missing")
    form_only = call(
        sonarqube, "POST", "api/ce/submit", data={"projectKey": "wine", "report": "inline"}
    )
    assert_error(form_only, 400, "The 'report' parameter is missing")
    malformed = submit(sonarqube, params=[("characteristic", "branch")])
    assert_error(
        malformed,
        400,
        "Parameter 'characteristic' must be a key-value pair with the format 'key=value'.",
    )
    twice = submit(
        sonarqube, params=[("characteristic", "branch=a"), ("characteristic", "branch=b")]
    )
    assert_error(twice, 400, "Key 'branch' was provided twice with parameters 'characteristic'")
    too_long = submit(sonarqube, "k" * 401)
    assert_error(
        too_long, 400, "'projectKey' length (401) is longer than the maximum authorized (400)"
    )
    by_get = call(sonarqube, "GET", "api/ce/submit", params={"projectKey": "wine"})
    assert_error(by_get, 405, "HTTP method POST is required")
    anonymous = submit(sonarqube, auth=None)
    assert (anonymous.status_code, anonymous.content) == (401, b"")
    assert sonarqube.submissions == []
    assert sonarqube.internal_errors == []


def test_ce_submit_reads_multipart_form_fields_as_parameters(sonarqube):
    body = {
        "projectKey": (None, "from-form"),
        "projectName": (None, "From form"),
        "characteristic": (None, "pullRequest=7"),
        "report": ("report.zip", b"\x00\x01binary\r\n--x", "application/zip"),
    }

    answer = call(sonarqube, "POST", "api/ce/submit", files=body)

    assert answer.status_code == 200, answer.text
    (record,) = sonarqube.submissions
    assert (record.project_key, record.project_name) == ("from-form", "From form")
    assert record.fields == ("projectKey", "projectName", "characteristic", "report")
    assert record.characteristics == {"pullRequest": "7"}
    assert record.report == b"\x00\x01binary\r\n--x"
