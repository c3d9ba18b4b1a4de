"""Contract tests of the Jenkins double, driven by clients we did not write.

python-jenkins (what mlci uses) and api4jenkins (an independent client on httpx) run the same
lifecycle against the double: version, whoami, create a Pipeline job, read its config back,
reconfigure it, build it and follow the queue item to the build, delete it; once with an API
token (no crumb needed) and once with a password (crumb path). Plain ``requests`` covers what
neither client exposes: exact status codes and headers, the Generic Webhook Trigger endpoint
and the fault switches. If both libraries work against the double, it answers the way Jenkins
answers them.
"""

from __future__ import annotations

import copy
import hmac
import http.client
import json
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import requests

import jenkins as python_jenkins
from tests.doubles.fixtures_jenkins import jenkins  # noqa: F401  (registers the fixture)
from tests.doubles.jenkins import (
    DECLARED_OPTIONS_PROPERTIES,
    JenkinsDouble,
    identity_transform,
)

pytestmark = pytest.mark.contract


@pytest.fixture
def double(jenkins: JenkinsDouble) -> JenkinsDouble:  # noqa: F811
    """The ``jenkins`` fixture under another name (python-jenkins owns the name here)."""
    return jenkins


_OPEN: list[Any] = []  # client sessions to close after the test


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def session(auth: tuple[str, str] | None = None) -> requests.Session:
    opened = requests.Session()
    opened.auth = auth
    _OPEN.append(opened)
    return opened


PASSWORD = ("admin", "admin")
SHA = "9fceb02d0ae598e95dc970b74767f19372d61af8"
CLONE_URL = "http://gitbucket:8080/git/root/wine-classifier.git"
GWT_TOKEN = "mlci-webhook-token"

_VARIABLE = """
            <org.jenkinsci.plugins.gwt.GenericVariable>
              <expressionType>JSONPath</expressionType>
              <key>{key}</key>
              <value>{value}</value>
              <regexpFilter></regexpFilter>
              {default}
            </org.jenkinsci.plugins.gwt.GenericVariable>"""

PUSH_VARIABLES = (("ref", "$.ref"), ("commit", "$.after"), ("clone_url", "$.repository.clone_url"))


def pipeline_xml(
    *,
    token: str = GWT_TOKEN,
    expression: str = "^refs/heads/main$",
    filter_text: str = "$ref",
    variables: tuple[tuple[str, str], ...] = PUSH_VARIABLES,
    default_value: bool = True,
    description: str = "mlci pipeline",
    extra_trigger: str = "",
    extra_properties: str = "",
    disabled: bool = False,
) -> str:
    default = "<defaultValue></defaultValue>" if default_value else ""
    rendered = "".join(
        _VARIABLE.format(key=key, value=value, default=default) for key, value in variables
    )
    return f"""<?xml version='1.1' encoding='UTF-8'?>
<flow-definition plugin="workflow-job@1400.v7fd111b_ec82f">
  <description>{description}</description>
  <keepDependencies>false</keepDependencies>
  <properties>
    <org.jenkinsci.plugins.workflow.job.properties.PipelineTriggersJobProperty>
      <triggers>
        <org.jenkinsci.plugins.gwt.GenericTrigger plugin="generic-webhook-trigger@2.2.2">
          <spec></spec>
          <genericVariables>{rendered}
          </genericVariables>
          <regexpFilterText>{filter_text}</regexpFilterText>
          <regexpFilterExpression>{expression}</regexpFilterExpression>
          <printPostContent>false</printPostContent>
          <printContributedVariables>false</printContributedVariables>
          <causeString>Push of $ref</causeString>
          <token>{token}</token>
          <tokenCredentialId></tokenCredentialId>
          <silentResponse>false</silentResponse>
          <overrideQuietPeriod>false</overrideQuietPeriod>
          <shouldNotFlattern>false</shouldNotFlattern>{extra_trigger}
        </org.jenkinsci.plugins.gwt.GenericTrigger>
      </triggers>
    </org.jenkinsci.plugins.workflow.job.properties.PipelineTriggersJobProperty>{extra_properties}
  </properties>
  <definition class="org.jenkinsci.plugins.workflow.cps.CpsScmFlowDefinition">
    <scm class="hudson.plugins.git.GitSCM" plugin="git@5.7.0">
      <configVersion>2</configVersion>
      <userRemoteConfigs>
        <hudson.plugins.git.UserRemoteConfig>
          <url>{CLONE_URL}</url>
        </hudson.plugins.git.UserRemoteConfig>
      </userRemoteConfigs>
      <branches>
        <hudson.plugins.git.BranchSpec>
          <name>*/main</name>
        </hudson.plugins.git.BranchSpec>
      </branches>
    </scm>
    <scriptPath>Jenkinsfile</scriptPath>
    <lightweight>true</lightweight>
  </definition>
  <triggers/>
  <disabled>{"true" if disabled else "false"}</disabled>
</flow-definition>
"""


PARAMETERS = """
    <hudson.model.ParametersDefinitionProperty>
      <parameterDefinitions>
        <hudson.model.StringParameterDefinition>
          <name>MODEL</name>
          <defaultValue>wine</defaultValue>
          <trim>true</trim>
        </hudson.model.StringParameterDefinition>
      </parameterDefinitions>
    </hudson.model.ParametersDefinitionProperty>"""


def push_payload(ref: str = "refs/heads/main", sha: str = SHA) -> dict[str, Any]:
    commits = [] if ref.startswith("refs/tags/") else [{"id": sha, "message": "Train"}]
    return {
        "ref": ref,
        "before": "0" * 40,
        "after": sha,
        "commits": commits,
        "head_commit": commits[0] if commits else None,
        "pusher": {"name": "root", "email": "root@localhost"},
        "sender": {"login": "root"},
        "repository": {
            "name": "wine-classifier",
            "full_name": "root/wine-classifier",
            "clone_url": CLONE_URL,
            "html_url": "http://gitbucket:8080/root/wine-classifier",
        },
    }


def client(double: JenkinsDouble, password: str | None = None) -> python_jenkins.Jenkins:
    """One python-jenkins object per session, as the platform notes ask."""
    server = python_jenkins.Jenkins(double.url, "admin", password or double.api_token, timeout=10)
    _OPEN.append(server._session)
    return server


def invoke(double: JenkinsDouble, **kwargs: Any) -> requests.Response:
    kwargs.setdefault("timeout", 5)
    return requests.post(f"{double.url}/generic-webhook-trigger/invoke", **kwargs)


def post_xml(
    double: JenkinsDouble, path: str, xml: str | bytes, **kwargs: Any
) -> requests.Response:
    kwargs.setdefault("auth", ("admin", double.api_token))
    kwargs.setdefault("headers", {"Content-Type": "text/xml; charset=utf-8"})
    data = xml.encode("utf-8") if isinstance(xml, str) else xml
    return requests.post(f"{double.url}/{path}", data=data, timeout=5, **kwargs)


def same_xml(left: str, right: str) -> bool:
    """Compare two XML documents as trees (tags, attributes, stripped text)."""

    def canon(element: ET.Element) -> Any:
        return (
            element.tag,
            sorted(element.attrib.items()),
            (element.text or "").strip(),
            [canon(child) for child in element],
        )

    return canon(ET.fromstring(left.encode())) == canon(ET.fromstring(right.encode()))


def api4jenkins_client(double: JenkinsDouble, password: str | None = None) -> Any:
    api4jenkins = pytest.importorskip("api4jenkins", reason="api4jenkins is the second client")
    j = api4jenkins.Jenkins(
        double.url + "/", auth=("admin", password or double.api_token), timeout=10
    )
    _OPEN.append(j.http_client)
    return j


# ----------------------------------------------------------------------------------------------
# Version headers and authentication.


def test_root_answers_anonymous_403_but_still_advertises_the_version(double: JenkinsDouble):
    response = requests.get(double.url + "/", timeout=5)
    assert response.status_code == 403
    assert response.headers["X-Jenkins"] == double.version
    assert re.fullmatch(r"2\.4\d\d\.\d+", response.headers["X-Jenkins"])
    assert response.headers["X-Hudson"] == "1.395"
    assert re.fullmatch(r"[0-9a-f]{8}", response.headers["X-Jenkins-Session"])
    assert response.headers["X-You-Are-Authenticated-As"] == "anonymous"
    assert "Authentication required" in response.text


def test_python_jenkins_get_version_only_works_once_credentials_were_used(
    double: JenkinsDouble,
):
    server = client(double)
    # get_version() sends no credentials before another call resolved them: 403 on a locked
    # Jenkins, which python-jenkins reports as BadHTTPException.
    with pytest.raises(python_jenkins.BadHTTPException):
        server.get_version()
    assert server.get_whoami()["id"] == "admin"
    assert server.get_version() == double.version


def test_get_version_works_first_when_anonymous_may_read(double: JenkinsDouble):
    double.anonymous_read = True
    assert client(double).get_version() == double.version


@pytest.mark.parametrize("secret", ["password", "token"])
def test_whoami_accepts_password_and_api_token(double: JenkinsDouble, secret: str):
    server = client(double, "admin" if secret == "password" else None)
    me = server.get_whoami()
    assert me["_class"] == "hudson.model.User"
    assert me["id"] == me["fullName"] == "admin"


@pytest.mark.parametrize("secret", ["wrong-password", "11" + "0" * 32])
def test_bad_credentials_answer_401(double: JenkinsDouble, secret: str):
    with pytest.raises(python_jenkins.JenkinsException, match=r"\[401\]"):
        client(double, secret).get_whoami()
    response = requests.get(double.url + "/me/api/json", auth=("admin", secret), timeout=5)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="Jenkins"'


def test_anonymous_reads_of_data_answer_403(double: JenkinsDouble):
    for path in ("api/json", "me/api/json", "crumbIssuer/api/json", "queue/api/json"):
        response = requests.get(f"{double.url}/{path}", timeout=5)
        assert response.status_code == 403, path
        assert response.headers["X-Required-Permission"] == "hudson.model.Hudson.Read"


def test_reject_all_requests_answers_401_even_for_good_credentials(double: JenkinsDouble):
    double.reject_all_requests = True
    with pytest.raises(python_jenkins.JenkinsException, match=r"\[401\]"):
        client(double).get_whoami()
    double.reject_all_requests = False
    assert client(double).get_whoami()["id"] == "admin"


def test_version_headers_come_with_api_answers_not_with_config_xml(double: JenkinsDouble):
    double.add_job("mlci", pipeline_xml())
    auth = ("admin", double.api_token)
    api = requests.get(f"{double.url}/job/mlci/api/json", auth=auth, timeout=5)
    assert api.headers["X-Jenkins"] == double.version
    assert api.headers["Content-Type"].startswith("application/json")
    config = requests.get(f"{double.url}/job/mlci/config.xml", auth=auth, timeout=5)
    assert config.status_code == 200
    assert config.headers["Content-Type"] == "application/xml"
    assert "X-Jenkins" not in config.headers


# ----------------------------------------------------------------------------------------------
# CSRF crumbs.


def test_crumb_issuer_answers_a_crumb_bound_to_a_new_web_session(double: JenkinsDouble):
    browser = session(PASSWORD)
    response = browser.get(double.url + "/crumbIssuer/api/json", timeout=5)
    assert response.status_code == 200
    body = response.json()
    assert body["_class"] == "hudson.security.csrf.DefaultCrumbIssuer"
    assert body["crumbRequestField"] == "Jenkins-Crumb"
    assert re.fullmatch(r"[0-9a-f]{64}", body["crumb"])
    [cookie] = list(browser.cookies)
    assert cookie.name.startswith("JSESSIONID.")
    # The same session gets the same crumb back and no new cookie.
    again = browser.get(double.url + "/crumbIssuer/api/json", timeout=5)
    assert again.json()["crumb"] == body["crumb"]
    assert "Set-Cookie" not in again.headers


def test_password_post_without_a_crumb_is_refused(double: JenkinsDouble):
    response = post_xml(double, "createItem?name=mlci", pipeline_xml(), auth=PASSWORD)
    assert response.status_code == 403
    assert "No valid crumb was included in the request" in response.text
    assert double.jobs == {}
    assert double.mutation_count() == 0


def test_crumb_only_works_in_the_session_that_fetched_it(double: JenkinsDouble):
    first, second = session(PASSWORD), session(PASSWORD)
    crumb = first.get(double.url + "/crumbIssuer/api/json", timeout=5).json()["crumb"]
    headers = {"Content-Type": "text/xml", "Jenkins-Crumb": crumb}
    url = double.url + "/createItem?name=mlci"
    foreign = second.post(url, data=pipeline_xml(), headers=headers, timeout=5)
    assert foreign.status_code == 403
    assert "No valid crumb" in foreign.text
    own = first.post(url, data=pipeline_xml(), headers=headers, timeout=5)
    assert own.status_code == 200
    assert list(double.jobs) == ["mlci"]


def test_api_token_posts_need_no_crumb(double: JenkinsDouble):
    response = post_xml(double, "createItem?name=mlci", pipeline_xml())
    assert response.status_code == 200
    assert "Jenkins-Crumb" not in double.requests[-1].headers


def test_sharing_a_crumb_between_python_jenkins_objects_gives_no_valid_crumb(
    double: JenkinsDouble,
):
    first = client(double, "admin")
    first.get_whoami()
    first.maybe_add_crumb(requests.Request("GET", double.url))
    second = client(double, "admin")
    second.crumb = first.crumb  # the crumb travels, the session cookie does not
    with pytest.raises(python_jenkins.JenkinsException, match="No valid crumb"):
        second.create_job("mlci", pipeline_xml())
    assert client(double, "admin").create_job("mlci", pipeline_xml()) is None
    assert list(double.jobs) == ["mlci"]


def test_with_csrf_protection_off_there_is_no_crumb_issuer(double: JenkinsDouble):
    double.csrf = False
    response = requests.get(double.url + "/crumbIssuer/api/json", auth=PASSWORD, timeout=5)
    assert response.status_code == 404
    server = client(double, "admin")
    server.create_job("mlci", pipeline_xml())
    assert server.crumb is False
    # (python-jenkins may still send a stale Jenkins-Crumb header: create_job and reconfig_job
    # add the crumb to its module-level DEFAULT_HEADERS dict, which outlives the object.)
    assert post_xml(double, "createItem?name=other", pipeline_xml(), auth=PASSWORD).ok


# ----------------------------------------------------------------------------------------------
# The job lifecycle through python-jenkins, with a token and with a password.


@pytest.mark.parametrize("secret", ["token", "password"])
def test_python_jenkins_job_lifecycle(double: JenkinsDouble, secret: str):
    server = client(double, "admin" if secret == "password" else None)
    assert server.get_whoami()["id"] == "admin"
    assert server.get_version() == double.version
    assert server.job_exists("mlci") is None  # None, not False

    server.create_job("mlci", pipeline_xml())
    assert server.job_exists("mlci") is True
    assert same_xml(server.get_job_config("mlci"), pipeline_xml())

    server.reconfig_job("mlci", pipeline_xml(description="second"))
    assert "<description>second</description>" in server.get_job_config("mlci")

    queue_id = server.build_job("mlci")
    assert isinstance(queue_id, int)
    waiting = server.get_queue_item(queue_id)
    assert waiting["why"] == "Waiting for next available executor"
    assert "executable" not in waiting
    left = server.get_queue_item(queue_id)
    assert left["_class"] == "hudson.model.Queue$LeftItem"
    number = left["executable"]["number"]
    assert left["executable"]["url"] == f"{double.url}/job/mlci/{number}/"
    running = server.get_build_info("mlci", number)
    assert (running["building"], running["result"]) == (True, None)
    done = server.get_build_info("mlci", number)
    assert (done["building"], done["result"]) == (False, "SUCCESS")
    assert done["url"] == f"{double.url}/job/mlci/{number}/"
    assert done["queueId"] == queue_id

    server.delete_job("mlci")
    assert server.job_exists("mlci") is None
    assert double.mutation_counts == {"createItem": 1, "config.xml": 1, "build": 1, "doDelete": 1}
    posts = [r for r in double.requests if r.method == "POST"]
    if secret == "password":
        assert all(r.headers.get("Jenkins-Crumb") for r in posts)
        assert all("JSESSIONID." in r.headers.get("Cookie", "") for r in posts)
    assert double.internal_errors == []


def test_get_job_info_describes_the_pipeline_job(double: JenkinsDouble):
    double.add_job("mlci", pipeline_xml(extra_properties=PARAMETERS))
    info = client(double).get_job_info("mlci")
    assert info["_class"] == "org.jenkinsci.plugins.workflow.job.WorkflowJob"
    assert info["name"] == info["fullName"] == "mlci"
    assert info["url"] == f"{double.url}/job/mlci/"
    assert info["buildable"] is True
    assert info["nextBuildNumber"] == 1
    assert info["lastBuild"] is None
    assert info["builds"] == []
    assert info["color"] == "notbuilt"
    [parameters] = [p for p in info["property"] if "parameterDefinitions" in p]
    assert parameters["parameterDefinitions"][0]["name"] == "MODEL"
    assert parameters["parameterDefinitions"][0]["defaultParameterValue"]["value"] == "wine"


def test_tree_queries_return_only_the_requested_fields(double: JenkinsDouble):
    double.add_job("mlci", pipeline_xml())
    auth = ("admin", double.api_token)
    root = requests.get(double.url + "/api/json?tree=jobs[name,url]", auth=auth, timeout=5)
    assert root.json() == {
        "_class": "hudson.model.Hudson",
        "jobs": [
            {
                "_class": "org.jenkinsci.plugins.workflow.job.WorkflowJob",
                "name": "mlci",
                "url": f"{double.url}/job/mlci/",
            }
        ],
    }
    job = requests.get(double.url + "/job/mlci/api/json?tree=name", auth=auth, timeout=5)
    assert job.json() == {
        "_class": "org.jenkinsci.plugins.workflow.job.WorkflowJob",
        "name": "mlci",
    }


def test_missing_job_answers_404(double: JenkinsDouble):
    auth = ("admin", double.api_token)
    response = requests.get(double.url + "/job/nope/api/json?tree=name", auth=auth, timeout=5)
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("text/html")
    with pytest.raises(python_jenkins.NotFoundException):
        client(double).reconfig_job("nope", pipeline_xml())


# ----------------------------------------------------------------------------------------------
# createItem and config.xml details.


def test_create_item_duplicate_answers_400_with_x_error(double: JenkinsDouble):
    assert post_xml(double, "createItem?name=mlci", pipeline_xml()).status_code == 200
    response = post_xml(double, "createItem?name=mlci", pipeline_xml())
    assert response.status_code == 400
    # Jetty writes the curly quotes of the message as '?' in the header; the page has them.
    assert response.headers["X-Error"] == "A job already exists with the name ?mlci?"
    assert "A job already exists with the name \u2018mlci\u2019" in response.text
    assert double.mutation_count("createItem") == 1
    with pytest.raises(python_jenkins.JenkinsException, match=r"job\[mlci\] already exists"):
        client(double).create_job("mlci", pipeline_xml())


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "error"),
    [
        ("createItem?name=x", "<flow-definition>", None, 500, None),
        ("createItem?name=x", "", None, 500, None),
        ("createItem?name=x", "<unknown-item/>", None, 500, None),
        ("createItem?name=x", pipeline_xml(), {"Content-Type": "text/plain"}, 400, "No mode given"),
        ("createItem?name=x", pipeline_xml(), {"Content-Type": "application/json"}, 400, None),
        ("createItem", pipeline_xml(), None, 400, "Query parameter 'name' is required"),
        ("createItem?name=a%2Fb", pipeline_xml(), None, 400, "?/? is an unsafe character"),
    ],
)
def test_create_item_refuses_bad_requests(
    double: JenkinsDouble,
    path: str,
    body: str,
    headers: dict[str, str] | None,
    status: int,
    error: str | None,
):
    kwargs = {"headers": headers} if headers is not None else {}
    response = post_xml(double, path, body, **kwargs)
    assert response.status_code == status
    if error is not None:
        assert response.headers["X-Error"] == error
    assert double.jobs == {}
    assert double.mutation_count() == 0


def test_create_item_without_content_type_is_refused(double: JenkinsDouble):
    response = requests.post(
        double.url + "/createItem?name=x",
        data=pipeline_xml().encode(),
        auth=("admin", double.api_token),
        headers={"Content-Type": None},  # type: ignore[dict-item]
        timeout=5,
    )
    assert response.status_code == 400
    assert response.headers["X-Error"] == "No Content-Type header set"


def test_config_xml_comes_back_as_jenkins_stores_it(double: JenkinsDouble):
    sent = (
        "<?xml version='1.1' encoding='UTF-8'?>\n"
        "<!-- managed by mlci -->\n"
        "<flow-definition plugin='workflow-job@1'>\n"
        '  <description>a &gt; b &amp; "c"</description>\n'
        "  <properties></properties>\n"
        "  <definition class=\"x\"><script><![CDATA[echo '<ok>']]></script></definition>\n"
        "  <disabled>false</disabled>\n"
        "</flow-definition>\n"
    )
    assert post_xml(double, "createItem?name=mlci", sent).status_code == 200
    stored = client(double).get_job_config("mlci")
    assert stored == (
        '<?xml version="1.0" encoding="UTF-8"?>'
        "<!-- managed by mlci -->"
        '<flow-definition plugin="workflow-job@1">\n'
        '  <description>a &gt; b &amp; "c"</description>\n'
        "  <properties/>\n"
        "  <definition class=\"x\"><script><![CDATA[echo '<ok>']]></script></definition>\n"
        "  <disabled>false</disabled>\n"
        "</flow-definition>"
    )
    assert stored != sent and same_xml(stored, sent)
    assert double.jobs["mlci"] == stored == identity_transform(sent.encode())


def test_reconfig_keeps_the_job_type_and_reads_the_charset(double: JenkinsDouble):
    double.add_job("mlci", pipeline_xml())
    server = client(double)
    freestyle = "<project><description>x</description></project>"
    with pytest.raises(python_jenkins.JenkinsException, match=r"\[500\]"):
        server.reconfig_job("mlci", freestyle)
    # python-jenkins declares charset=utf-8, so non-ASCII text survives ...
    server.reconfig_job("mlci", pipeline_xml(description="caf\u00e9"))
    assert "<description>caf\u00e9</description>" in double.jobs["mlci"]
    # ... while a body without charset is read as ISO-8859-1, like a servlet reader does.
    response = post_xml(
        double,
        "job/mlci/config.xml",
        pipeline_xml(description="caf\u00e9"),
        headers={"Content-Type": "application/xml"},
    )
    assert response.status_code == 200
    assert "<description>caf\u00c3\u00a9</description>" in double.jobs["mlci"]
    assert double.mutation_count("config.xml") == 2


def test_delete_by_http_delete_needs_no_crumb(double: JenkinsDouble):
    double.add_job("mlci", pipeline_xml())
    response = requests.delete(
        double.url + "/job/mlci/", auth=PASSWORD, allow_redirects=False, timeout=5
    )
    assert response.status_code == 302
    assert response.headers["Location"] == double.url + "/"
    assert double.jobs == {}
    assert double.mutation_count("doDelete") == 1


def test_upsert_is_idempotent_by_the_counters(double: JenkinsDouble):
    server = client(double)
    for _ in range(3):
        if server.job_exists("mlci"):
            if not same_xml(server.get_job_config("mlci"), pipeline_xml()):
                server.reconfig_job("mlci", pipeline_xml())
        else:
            server.create_job("mlci", pipeline_xml())
    assert double.mutation_counts == {"createItem": 1}
    assert double.call_count("job/mlci/config.xml", "GET") == 2


# ----------------------------------------------------------------------------------------------
# Builds and the queue.


def test_build_answers_201_with_the_queue_item_location(double: JenkinsDouble):
    double.add_job("mlci", pipeline_xml())
    response = requests.post(
        double.url + "/job/mlci/build", auth=("admin", double.api_token), timeout=5
    )
    assert response.status_code == 201
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/queue/item/1/", response.headers["Location"])
    assert response.headers["Location"].startswith(double.url + "/")


def test_queue_item_waits_for_the_configured_number_of_polls(double: JenkinsDouble):
    double.add_job("mlci", pipeline_xml())
    double.queue_delay_polls = 3
    double.build_polls = 2
    server = client(double)
    queue_id = server.build_job("mlci")
    for _ in range(3):
        item = server.get_queue_item(queue_id)
        assert item["_class"] == "hudson.model.Queue$BuildableItem"
        assert "executable" not in item
    item = server.get_queue_item(queue_id)
    assert item["executable"]["number"] == 1
    states = [server.get_build_info("mlci", 1)["building"] for _ in range(3)]
    assert states == [True, True, False]
    assert [b.result for b in double.builds["mlci"]] == ["SUCCESS"]


def test_scripted_and_default_results(double: JenkinsDouble):
    double.add_job("mlci", pipeline_xml())
    double.set_build_result("mlci", 1, "FAILURE")
    double.default_result = "UNSTABLE"
    server = client(double)
    double.build_polls = 0
    for _ in range(2):
        server.build_job("mlci")
        double.start_queued_builds()
    assert server.get_build_info("mlci", 1)["result"] == "FAILURE"
    assert server.get_build_info("mlci", 2)["result"] == "UNSTABLE"
    assert server.get_job_info("mlci")["color"] == "yellow"


def test_builds_requested_while_one_waits_fold_into_it(double: JenkinsDouble):
    double.add_job("mlci", pipeline_xml())
    server = client(double)
    first, second = server.build_job("mlci"), server.build_job("mlci")
    assert first == second
    double.start_queued_builds()
    assert server.build_job("mlci") == first + 1
    assert double.mutation_count("build") == 3
    assert len(double.builds["mlci"]) == 1


def test_parameterized_builds(double: JenkinsDouble):
    double.add_job("mlci", pipeline_xml(extra_properties=PARAMETERS))
    double.add_job("plain", pipeline_xml(token="other"))
    server = client(double)
    queue_id = server.build_job("mlci", {"MODEL": "iris"})
    assert double.queue[-1].parameters == {"MODEL": "iris"}
    assert double.requests[-1].path == "job/mlci/buildWithParameters"
    double.start_queued_builds()
    assert double.builds["mlci"][0].parameters == {"MODEL": "iris"}
    assert double.builds["mlci"][0].queue_id == queue_id
    auth = ("admin", double.api_token)
    bare = requests.post(double.url + "/job/mlci/build", auth=auth, timeout=5)
    assert bare.status_code == 400
    assert "Nothing is submitted" in bare.text
    with pytest.raises(python_jenkins.JenkinsException, match=r"\[500\]"):
        server.build_job("plain", {"MODEL": "iris"})


def test_disabled_job_is_not_buildable(double: JenkinsDouble):
    double.add_job("mlci", pipeline_xml(disabled=True))
    response = requests.post(
        double.url + "/job/mlci/build", auth=("admin", double.api_token), timeout=5
    )
    assert response.status_code == 409
    assert "mlci is not buildable" in response.text
    server = client(double)
    assert server.get_job_info("mlci")["buildable"] is False
    # python-jenkins only translates 401/403/500 and 404: a 409 escapes as requests' HTTPError.
    with pytest.raises(requests.HTTPError, match="409"):
        server.build_job("mlci")


def test_unknown_queue_item(double: JenkinsDouble):
    with pytest.raises(python_jenkins.JenkinsException, match=r"queue number\[42\] does not exist"):
        client(double).get_queue_item(42)


# ----------------------------------------------------------------------------------------------
# The second client: api4jenkins.


@pytest.mark.parametrize("secret", ["token", "password"])
def test_api4jenkins_job_lifecycle(double: JenkinsDouble, secret: str):
    j = api4jenkins_client(double, "admin" if secret == "password" else None)
    assert j.version == double.version
    assert j.get_job("mlci") is None
    j.create_job("mlci", pipeline_xml())
    job = j.get_job("mlci")
    assert type(job).__name__ == "WorkflowJob"
    assert same_xml(job.configure(), pipeline_xml())
    job.configure(pipeline_xml(description="second"))
    assert "<description>second</description>" in job.configure()

    item = j.build_job("mlci")
    assert item.id == 1
    deadline = time.monotonic() + 5
    while (build := item.get_build()) is None:
        assert time.monotonic() < deadline
    assert type(build).__name__ == "WorkflowRun"
    assert build.url == f"{double.url}/job/mlci/1/"
    while build.building:
        assert time.monotonic() < deadline
    assert build.result == "SUCCESS"
    assert job.get_last_build() == build

    j.delete_job("mlci")
    assert j.get_job("mlci") is None
    assert double.mutation_counts == {"createItem": 1, "config.xml": 1, "build": 1, "doDelete": 1}
    if secret == "password":
        posts = [r for r in double.requests if r.method == "POST"]
        assert all(r.headers.get("Jenkins-Crumb") for r in posts)
    assert double.internal_errors == []


def test_api4jenkins_sees_the_x_error_of_a_duplicate(double: JenkinsDouble):
    api4jenkins = pytest.importorskip("api4jenkins")
    j = api4jenkins_client(double)
    j.create_job("mlci", pipeline_xml())
    with pytest.raises(api4jenkins.exceptions.BadRequestError, match="already exists"):
        j.create_job("mlci", pipeline_xml())


def test_api4jenkins_bad_credentials(double: JenkinsDouble):
    api4jenkins = pytest.importorskip("api4jenkins")
    with pytest.raises(api4jenkins.exceptions.AuthenticationError):
        _ = api4jenkins_client(double, "wrong").version


# ----------------------------------------------------------------------------------------------
# Generic Webhook Trigger.


def test_push_to_main_triggers_the_job(double: JenkinsDouble):
    double.add_job("mlci", pipeline_xml())
    response = invoke(double, params={"token": GWT_TOKEN}, json=push_payload())
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == {
        "jobs": {
            "mlci": {
                "id": 1,
                "regexpFilterExpression": "^refs/heads/main$",
                "regexpFilterText": "refs/heads/main",
                "resolvedVariables": {
                    "clone_url": CLONE_URL,
                    "commit": SHA,
                    "ref": "refs/heads/main",
                },
                "triggered": True,
                "url": "queue/item/1/",
            }
        },
        "message": "Triggered jobs.",
    }
    double.start_queued_builds()
    [build] = double.builds["mlci"]
    assert build.variables["commit"] == SHA
    assert build.causes == ("Push of refs/heads/main",)
    assert double.mutation_count("generic-webhook-trigger") == 1


def test_push_to_a_feature_branch_does_not_trigger(double: JenkinsDouble):
    double.add_job("mlci", pipeline_xml())
    response = invoke(double, params={"token": GWT_TOKEN}, json=push_payload("refs/heads/feature"))
    assert response.status_code == 200
    assert response.json()["message"] == "Triggered jobs."
    result = response.json()["jobs"]["mlci"]
    assert result["triggered"] is False
    assert (result["id"], result["url"]) == (0, "")
    assert result["regexpFilterText"] == "refs/heads/feature"
    assert double.queue == []
    assert double.mutation_count() == 0


def test_tag_pushes_trigger_a_tag_job_only(double: JenkinsDouble):
    double.add_job("release", pipeline_xml(expression="^refs/tags/.*"))
    tag = invoke(double, params={"token": GWT_TOKEN}, json=push_payload("refs/tags/v1.2.0"))
    assert tag.json()["jobs"]["release"]["triggered"] is True
    branch = invoke(double, params={"token": GWT_TOKEN}, json=push_payload())
    assert branch.json()["jobs"]["release"]["triggered"] is False


def test_unknown_or_missing_token_answers_404(double: JenkinsDouble):
    double.add_job("mlci", pipeline_xml())
    wrong = invoke(double, params={"token": "nope"}, json=push_payload())
    assert wrong.status_code == 404
    assert wrong.json() == {
        "jobs": None,
        "message": "Did not find any jobs with GenericTrigger configured!\nA token was supplied.\n",
    }
    missing = invoke(double, json=push_payload())
    assert missing.status_code == 404
    assert "No token was supplied." in missing.json()["message"]
    assert double.queue == []


@pytest.mark.parametrize(
    "headers", [{"token": GWT_TOKEN}, {"Authorization": f"Bearer {GWT_TOKEN}"}]
)
def test_token_in_a_header(double: JenkinsDouble, headers: dict[str, str]):
    double.add_job("mlci", pipeline_xml())
    response = invoke(double, headers=headers, json=push_payload())
    assert response.status_code == 200
    assert response.json()["jobs"]["mlci"]["triggered"] is True


def test_webhook_needs_no_crumb_but_bad_basic_credentials_still_fail(double: JenkinsDouble):
    double.add_job("mlci", pipeline_xml())
    assert invoke(double, params={"token": GWT_TOKEN}, json=push_payload()).status_code == 200
    bad = invoke(double, params={"token": GWT_TOKEN}, json=push_payload(), auth=("admin", "x"))
    assert bad.status_code == 401


def test_form_encoded_push_does_not_resolve_json_paths(double: JenkinsDouble):
    double.add_job("mlci", pipeline_xml())
    response = invoke(
        double, params={"token": GWT_TOKEN}, data={"payload": json.dumps(push_payload())}
    )
    result = response.json()["jobs"]["mlci"]
    assert result["resolvedVariables"] == {"clone_url": "", "commit": "", "ref": ""}
    assert result["triggered"] is False


def test_variables_are_flattened_and_defaults_apply(double: JenkinsDouble):
    double.add_job(
        "mlci",
        pipeline_xml(
            variables=(("repo", "$.repository"), ("ref", "$.ref"), ("gone", "$.missing")),
            default_value=False,
            filter_text="$ref $gone",
            expression="",
        ),
    )
    result = invoke(double, params={"token": GWT_TOKEN}, json=push_payload()).json()
    variables = result["jobs"]["mlci"]["resolvedVariables"]
    assert variables["repo_clone_url"] == CLONE_URL
    assert variables["repo_full_name"] == "root/wine-classifier"
    assert variables["repo"].startswith('{"name":"wine-classifier"')
    assert "gone" not in variables  # no <defaultValue>: unresolved and left unreplaced
    assert result["jobs"]["mlci"]["regexpFilterText"] == "refs/heads/main $gone"
    assert result["jobs"]["mlci"]["triggered"] is True  # an empty expression matches


def test_every_job_with_the_token_is_triggered(double: JenkinsDouble):
    double.add_job("train", pipeline_xml())
    double.add_job("release", pipeline_xml(expression="^refs/tags/.*"))
    double.add_job("other", pipeline_xml(token="another"))
    result = invoke(double, params={"token": GWT_TOKEN}, json=push_payload()).json()
    assert {name: r["triggered"] for name, r in result["jobs"].items()} == {
        "train": True,
        "release": False,
    }


def test_silent_response_and_bad_expressions(double: JenkinsDouble):
    silent = pipeline_xml().replace("<silentResponse>false", "<silentResponse>true")
    double.add_job("quiet", silent)
    quiet = invoke(double, params={"token": GWT_TOKEN}, json=push_payload())
    assert (quiet.status_code, quiet.content) == (200, b"")
    double.add_job("broken", pipeline_xml(token="broken", expression="^refs/(heads"))
    broken = invoke(double, params={"token": "broken"}, json=push_payload())
    assert broken.status_code == 500
    assert broken.json()["message"] == "There were errors when triggering jobs."


# ----------------------------------------------------------------------------------------------
# Fault injection.


def test_injected_failures_reach_the_client_then_stop(double: JenkinsDouble):
    double.fail_next("createItem")
    server = client(double)
    with pytest.raises(python_jenkins.JenkinsException, match=r"\[500\]"):
        server.create_job("mlci", pipeline_xml())
    server.create_job("mlci", pipeline_xml())
    assert double.mutation_count("createItem") == 1
    assert [r.status for r in double.requests if r.path == "createItem"] == [500, 200]


def test_a_hanging_jenkins_trips_the_client_timeout(double: JenkinsDouble):
    double.hang_next("me/api/json", 2)
    server = python_jenkins.Jenkins(double.url, "admin", double.api_token, timeout=0.3)
    _OPEN.append(server._session)
    started = time.monotonic()
    with pytest.raises(python_jenkins.TimeoutException):
        server.get_whoami()
    assert time.monotonic() - started < 1.5
    assert client(double).get_whoami()["id"] == "admin"


# ----------------------------------------------------------------------------------------------
# Declarative Pipelines re-save their job (pipeline-model-definition's Utils.updateJobProperties).

TRACKER = (
    "org.jenkinsci.plugins.pipeline.modeldefinition.actions.DeclarativeJobPropertyTrackerAction"
)
DECLARATIVE_ACTION = "org.jenkinsci.plugins.pipeline.modeldefinition.actions.DeclarativeJobAction"
DISCARDER = "jenkins.model.BuildDiscarderProperty"
NO_CONCURRENT = "org.jenkinsci.plugins.workflow.job.properties.DisableConcurrentBuildsJobProperty"
DURABILITY = (
    "<org.jenkinsci.plugins.workflow.job.properties.DurabilityHintJobProperty>"
    "<hint>PERFORMANCE_OPTIMIZED</hint>"
    "</org.jenkinsci.plugins.workflow.job.properties.DurabilityHintJobProperty>"
)


def discarder(num_to_keep: int) -> str:
    return (
        f'<{DISCARDER}><strategy class="hudson.tasks.LogRotator"><daysToKeep>-1</daysToKeep>'
        f"<numToKeep>{num_to_keep}</numToKeep><artifactDaysToKeep>-1</artifactDaysToKeep>"
        "<artifactNumToKeep>-1</artifactNumToKeep><removeLastBuild>false</removeLastBuild>"
        f"</strategy></{DISCARDER}>"
    )


def run_one_build(double: JenkinsDouble, server: python_jenkins.Jenkins, name: str) -> int:
    server.build_job(name)
    [(job, number)] = double.start_queued_builds()
    double.finish_build(job, number, "SUCCESS")
    return number


def property_tags(config: str) -> list[str]:
    return [p.tag for p in ET.fromstring(config.encode()).find("properties")]


def tracked(config: str) -> dict[str, list[str]]:
    tracker = ET.fromstring(config.encode()).find(f"actions/{TRACKER}")
    assert tracker is not None
    return {part.tag: [s.text for s in part.findall("string")] for part in tracker}


def without_plugin_attributes(element: ET.Element) -> ET.Element:
    element = copy.deepcopy(element)
    for node in element.iter():
        node.attrib.pop("plugin", None)
    return element


def test_declarative_options_resave_the_job_config_when_a_build_starts(double: JenkinsDouble):
    server = client(double)
    server.create_job("mlci", pipeline_xml())
    double.set_declared_job_properties("mlci", list(DECLARED_OPTIONS_PROPERTIES))
    before = server.get_job_config("mlci")
    assert before.startswith('<?xml version="1.0" encoding="UTF-8"?><flow-definition')
    assert server.get_job_info("mlci")["concurrentBuild"] is True

    run_one_build(double, server, "mlci")
    after = server.get_job_config("mlci")
    # XStream wrote it: its declaration, two-space indentation, the installed plugin versions.
    assert after.startswith(
        "<?xml version='1.1' encoding='UTF-8'?>\n"
        f'<flow-definition plugin="workflow-job@{double.plugin_versions["workflow-job"]}">\n'
        "  <actions>\n"
        f'    <{DECLARATIVE_ACTION} plugin="pipeline-model-definition@'
    )
    root = ET.fromstring(after.encode())
    assert [child.tag for child in root] == [
        "actions", "description", "keepDependencies", "properties", "definition", "triggers",
        "disabled",
    ]  # fmt: skip
    assert [a.tag for a in root.find("actions")] == [DECLARATIVE_ACTION, TRACKER]
    # The properties the Jenkinsfile declared, appended in descriptor-id order ...
    assert property_tags(after) == [
        "org.jenkinsci.plugins.workflow.job.properties.PipelineTriggersJobProperty",
        DISCARDER,
        NO_CONCURRENT,
    ]
    strategy = root.find(f"properties/{DISCARDER}/strategy")
    assert strategy.get("class") == "hudson.tasks.LogRotator"
    assert [(c.tag, c.text) for c in strategy] == [
        ("daysToKeep", "-1"), ("numToKeep", "30"), ("artifactDaysToKeep", "-1"),
        ("artifactNumToKeep", "-1"), ("removeLastBuild", "false"),
    ]  # fmt: skip
    assert root.find(f"properties/{NO_CONCURRENT}/abortPrevious").text == "false"
    # ... and recorded in the tracker action (a HashSet: Java's bucket order, not sorted).
    assert tracked(after) == {
        "jobProperties": [NO_CONCURRENT, DISCARDER],
        "triggers": [],
        "parameters": [],
        "options": [],
    }
    # The job's own trigger and definition are the ones posted (XStream adds the trigger's
    # missing boolean field and rewrites plugin versions).
    posted = ET.fromstring(pipeline_xml().encode())
    trigger_path = "properties/*/triggers/org.jenkinsci.plugins.gwt.GenericTrigger"
    trigger = root.find(trigger_path)
    assert trigger.get("plugin") == "generic-webhook-trigger@2.3.1"
    assert trigger.find("allowSeveralTriggersPerBuild").text == "false"
    trigger.remove(trigger.find("allowSeveralTriggersPerBuild"))
    assert same_xml(
        ET.tostring(without_plugin_attributes(trigger), encoding="unicode"),
        ET.tostring(without_plugin_attributes(posted.find(trigger_path)), encoding="unicode"),
    )
    assert same_xml(
        ET.tostring(without_plugin_attributes(root.find("definition")), encoding="unicode"),
        ET.tostring(without_plugin_attributes(posted.find("definition")), encoding="unicode"),
    )
    assert "<spec></spec>" in after and "<triggers/>" in after
    info = server.get_job_info("mlci")
    assert info["concurrentBuild"] is False
    assert {p["_class"] for p in info["property"]} >= {DISCARDER, NO_CONCURRENT}
    # The webhook still finds the job by its token.
    assert invoke(double, params={"token": GWT_TOKEN}, json=push_payload()).status_code == 200
    assert double.mutation_counts == {"createItem": 1, "build": 1, "generic-webhook-trigger": 1}


def test_declarative_options_replace_what_they_set_and_leave_the_rest(double: JenkinsDouble):
    server = client(double)
    server.create_job("mlci", pipeline_xml(extra_properties=discarder(5) + DURABILITY))
    double.set_declared_job_properties("mlci", list(DECLARED_OPTIONS_PROPERTIES))
    run_one_build(double, server, "mlci")
    first = server.get_job_config("mlci")
    # The job's own discarder was not set by the Jenkinsfile: it stays (TreeSet keeps the
    # existing instance); the durability hint is not touched; disableConcurrentBuilds is new.
    root = ET.fromstring(first.encode())
    assert root.find(f"properties/{DISCARDER}/strategy/numToKeep").text == "5"
    assert property_tags(first)[-3:] == [
        DISCARDER,
        "org.jenkinsci.plugins.workflow.job.properties.DurabilityHintJobProperty",
        NO_CONCURRENT,
    ]
    assert sorted(tracked(first)["jobProperties"]) == [DISCARDER, NO_CONCURRENT]

    # The Jenkinsfile now declares only the discarder: what it set before gives way.
    double.set_declared_job_properties("mlci", [discarder(30)])
    run_one_build(double, server, "mlci")
    second = server.get_job_config("mlci")
    root = ET.fromstring(second.encode())
    assert root.find(f"properties/{DISCARDER}/strategy/numToKeep").text == "30"
    assert NO_CONCURRENT not in property_tags(second)
    assert "org.jenkinsci.plugins.workflow.job.properties.DurabilityHintJobProperty" in (
        property_tags(second)
    )
    assert tracked(second)["jobProperties"] == [DISCARDER]

    # Nothing changes any more: the job is not saved again.
    run_one_build(double, server, "mlci")
    assert server.get_job_config("mlci") == second

    # A client posting its own config drops the actions; the next build applies and saves again.
    server.reconfig_job("mlci", pipeline_xml())
    assert TRACKER not in server.get_job_config("mlci")
    run_one_build(double, server, "mlci")
    assert tracked(server.get_job_config("mlci"))["jobProperties"] == [DISCARDER]


def test_a_declarative_jenkinsfile_without_options_saves_the_job_once(double: JenkinsDouble):
    server = client(double)
    server.create_job("mlci", pipeline_xml())
    server.create_job("scripted", pipeline_xml(token="other"))
    double.set_declared_job_properties("mlci", [])
    run_one_build(double, server, "mlci")
    run_one_build(double, server, "scripted")
    saved = server.get_job_config("mlci")
    assert tracked(saved) == {"jobProperties": [], "triggers": [], "parameters": [], "options": []}
    assert "      <jobProperties/>\n" in saved
    run_one_build(double, server, "mlci")
    assert server.get_job_config("mlci") == saved
    # Not declarative (the default): never re-saved.
    assert server.get_job_config("scripted") == identity_transform(
        pipeline_xml(token="other").encode()
    )
    with pytest.raises(ValueError, match="not a job property element"):
        double.set_declared_job_properties("mlci", ["<unclosed>"])


TRIGGERS_PROPERTY = "org.jenkinsci.plugins.workflow.job.properties.PipelineTriggersJobProperty"
PARAMETERS_PROPERTY = "hudson.model.ParametersDefinitionProperty"
TIMER = "hudson.triggers.TimerTrigger"


def timer(spec: str) -> str:
    return f"<{TIMER}><spec>{spec}</spec></{TIMER}>"


def string_parameter(name: str, description: str, default: str = "", trim: bool = True) -> str:
    return (
        f"<hudson.model.StringParameterDefinition><name>{name}</name>"
        f"<description>{description}</description><defaultValue>{default}</defaultValue>"
        f"<trim>{str(trim).lower()}</trim></hudson.model.StringParameterDefinition>"
    )


def timed_job_xml(triggers: str, parameters: str) -> str:
    """A Pipeline job with its own timer and parameters (no webhook trigger)."""
    return f"""<?xml version='1.1' encoding='UTF-8'?>
<flow-definition plugin="workflow-job">
  <description>nightly</description>
  <keepDependencies>false</keepDependencies>
  <properties>
    <{PARAMETERS_PROPERTY}><parameterDefinitions>{parameters}</parameterDefinitions></{PARAMETERS_PROPERTY}>
    <{TRIGGERS_PROPERTY}><triggers>{triggers}</triggers></{TRIGGERS_PROPERTY}>
  </properties>
  <definition class="org.jenkinsci.plugins.workflow.cps.CpsScmFlowDefinition" plugin="workflow-cps">
    <scriptPath>jenkins/score.Jenkinsfile</scriptPath>
    <lightweight>false</lightweight>
  </definition>
  <triggers/>
  <disabled>false</disabled>
</flow-definition>"""


def run_parameterized_build(double: JenkinsDouble, server: python_jenkins.Jenkins, name: str):
    server.build_job(name, {"INPUT": "batch.csv"})
    [(job, number)] = double.start_queued_builds()
    double.finish_build(job, number, "SUCCESS")


def triggers_and_parameters(config: str) -> tuple[list[str], list[str]]:
    root = ET.fromstring(config.encode())
    specs = [t.findtext("spec") for t in root.findall(f"properties/{TRIGGERS_PROPERTY}/triggers/*")]
    names = [p.findtext("name") for p in root.findall(f"properties/{PARAMETERS_PROPERTY}/*/*")]
    return specs, names


def test_declared_triggers_and_parameters_equal_to_the_jobs_change_nothing(
    double: JenkinsDouble,
):
    server = client(double)
    server.create_job("nightly", timed_job_xml(timer("H 2 * * *"), string_parameter("INPUT", "x")))
    double.set_declared_job_properties(
        "nightly", [], triggers_xml=[timer("H 2 * * *")],
        parameters_xml=[string_parameter("INPUT", "x")],
    )  # fmt: skip
    run_parameterized_build(double, server, "nightly")
    saved = server.get_job_config("nightly")
    # Only the declarative actions were added: the properties are where they were.
    assert property_tags(saved) == [PARAMETERS_PROPERTY, TRIGGERS_PROPERTY]
    assert triggers_and_parameters(saved) == (["H 2 * * *"], ["INPUT"])
    assert tracked(saved) == {
        "jobProperties": [], "triggers": [TIMER], "parameters": ["INPUT"], "options": [],
    }  # fmt: skip
    run_parameterized_build(double, server, "nightly")
    assert server.get_job_config("nightly") == saved


def test_a_trigger_set_outside_the_jenkinsfile_wins_until_the_jenkinsfile_set_one(
    double: JenkinsDouble,
):
    server = client(double)
    server.create_job("nightly", timed_job_xml(timer("H 3 * * *"), string_parameter("INPUT", "x")))
    double.set_declared_job_properties(
        "nightly", [], triggers_xml=[timer("H 2 * * *")],
        parameters_xml=[string_parameter("INPUT", "the batch")],
    )  # fmt: skip
    run_parameterized_build(double, server, "nightly")
    first = server.get_job_config("nightly")
    # getTriggersToApply: the job's own timer stays (a TreeSet by descriptor id keeps it);
    # getParametersToApply: the declared INPUT replaces the job's (another description), so
    # the parameters property is replaced, at the end.
    assert triggers_and_parameters(first) == (["H 3 * * *"], ["INPUT"])
    assert property_tags(first) == [TRIGGERS_PROPERTY, PARAMETERS_PROPERTY]
    described = ET.fromstring(first.encode()).find(
        f"properties/{PARAMETERS_PROPERTY}/*/*/description"
    )
    assert described.text == "the batch"
    # The next build: the timer is now one the Jenkinsfile set before, so it gives way.
    run_parameterized_build(double, server, "nightly")
    second = server.get_job_config("nightly")
    assert triggers_and_parameters(second) == (["H 2 * * *"], ["INPUT"])
    assert property_tags(second) == [PARAMETERS_PROPERTY, TRIGGERS_PROPERTY]
    # A Jenkinsfile that no longer declares them removes what it set.
    double.set_declared_job_properties("nightly", [])
    run_parameterized_build(double, server, "nightly")
    third = server.get_job_config("nightly")
    assert triggers_and_parameters(third) == ([], [])
    assert tracked(third)["triggers"] == [] and tracked(third)["parameters"] == []
    with pytest.raises(ValueError, match="declared by a declarative Jenkinsfile"):
        double.set_declared_job_properties("nightly", None, triggers_xml=[timer("H 2 * * *")])


# ----------------------------------------------------------------------------------------------
# The Generic Webhook Trigger's global whitelist (WhitelistVerifier, HMACVerifier).

HMAC_SECRET = "hook-secret"


def hmac_whitelist(double: JenkinsDouble, **item: Any) -> None:
    double.add_secret_text("gwt-hmac", HMAC_SECRET)
    settings = {
        "host": "",
        "hmac_enabled": True,
        "hmac_header": "X-Hub-Signature-256",
        "hmac_algorithm": "HmacSHA256",
        "hmac_credential_id": "gwt-hmac",
    }
    settings.update(item)
    double.set_gwt_whitelist(True, [settings])


def signed(body: bytes, algorithm: str = "sha256", secret: str = HMAC_SECRET) -> str:
    return hmac.new(secret.encode(), body, algorithm).hexdigest()


def test_whitelist_lets_a_correctly_signed_body_through(double: JenkinsDouble):
    double.add_job("mlci", pipeline_xml())
    hmac_whitelist(double)
    body = json.dumps(push_payload()).encode()
    headers = {"Content-Type": "application/json"}
    for signature in (f"sha256={signed(body)}", signed(body).upper()):
        response = invoke(
            double,
            params={"token": GWT_TOKEN},
            data=body,
            headers={**headers, "X-Hub-Signature-256": signature},
        )
        assert response.status_code == 200, response.text
        assert response.json()["jobs"]["mlci"]["triggered"] is True
    # GitBucket's sha1 header against an HmacSHA1 item.
    hmac_whitelist(double, hmac_header="X-Hub-Signature", hmac_algorithm="HmacSHA1")
    response = invoke(
        double,
        params={"token": GWT_TOKEN},
        data=body,
        headers={**headers, "X-Hub-Signature": f"sha1={signed(body, 'sha1')}"},
    )
    assert response.status_code == 200
    assert len(double.queue) == 3  # each invocation is its own build (the trigger's uuid)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("wrong signature", 'HMAC verification failed with "X-Hub-Signature-256" as "'),
        ("missing header", 'Was unable to find header with name "X-Hub-Signature-256" among {'),
        ("sha1 signature", "and algorithm HmacSHA256"),
        ("header twice", 'Was unable to find header with name "X-Hub-Signature-256"'),
        ("unknown token", 'HMAC verification failed with "X-Hub-Signature-256"'),
        ("form body", 'HMAC verification failed with "X-Hub-Signature-256"'),
    ],
)
def test_whitelist_refuses_what_does_not_verify(double: JenkinsDouble, case: str, reason: str):
    double.add_job("mlci", pipeline_xml())
    hmac_whitelist(double)
    body = json.dumps(push_payload()).encode()
    good = f"sha256={signed(body)}"
    headers = [("Content-Type", "application/json")]
    token = GWT_TOKEN
    if case == "wrong signature":
        headers.append(("X-Hub-Signature-256", f"sha256={signed(body, secret='other')}"))
    elif case == "sha1 signature":
        headers.append(("X-Hub-Signature-256", f"sha1={signed(body, 'sha1')}"))
    elif case == "header twice":
        headers += [("X-Hub-Signature-256", good), ("X-Hub-Signature-256", good)]
    elif case == "unknown token":  # the whitelist comes before the token lookup (404)
        headers.append(("X-Hub-Signature-256", "sha256=" + "0" * 64))
        token = "no-such-token"
    elif case == "form body":  # the plugin hashes its JSON rendering of the form, never the body
        body = urlencode({"payload": json.dumps(push_payload())}).encode()
        headers = [
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Hub-Signature-256", f"sha256={signed(body)}"),
        ]
    status, text = raw_post(double, f"/generic-webhook-trigger/invoke?token={token}", body, headers)
    assert status == 403
    answer = json.loads(text)
    assert answer["jobs"] is None
    message = answer["message"]
    assert message.startswith("Sender, 127.0.0.1, with headers {")
    assert "content-type=[" in message  # the request's headers, lower-cased, as a Java map
    assert " did not pass whitelist.\nDid not find a matching whitelisted host:\n1) " in message
    assert reason in message
    assert message.endswith("\n")
    assert double.queue == [] and double.mutation_count() == 0


def raw_post(
    double: JenkinsDouble, target: str, body: bytes, headers: list[tuple[str, str]]
) -> tuple[int, str]:
    """A POST that may repeat a header (requests cannot)."""
    connection = http.client.HTTPConnection(urlsplit(double.url).netloc, timeout=5)
    try:
        connection.putrequest("POST", target)
        for name, value in [*headers, ("Content-Length", str(len(body)))]:
            connection.putheader(name, value)
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def test_whitelist_hosts_and_the_switch(double: JenkinsDouble):
    double.add_job("mlci", pipeline_xml())
    payload = push_payload()

    def status(*hosts: str, enabled: bool = True) -> tuple[int, str]:
        double.set_gwt_whitelist(enabled, [{"host": host} for host in hosts])
        response = invoke(double, params={"token": GWT_TOKEN}, json=payload)
        return response.status_code, response.json()["message"] if response.content else ""

    assert status("127.0.0.1")[0] == 200
    assert status("127.0.0.0/8")[0] == 200
    assert status("127.0.0.1-127.0.0.9")[0] == 200
    assert status("  ")[0] == 200  # an empty host means any host
    code, message = status("10.0.0.0/8", "*", "gitbucket", "10.0.0.1", "::1")
    assert code == 403
    assert message.endswith(
        "Did not find a matching whitelisted host:\n"
        "1) 127.0.0.1 did not match Ipv4 range.\n"
        "2) * is not a valid IP string literal.\n"
        "3) gitbucket is not a valid IP string literal.\n"
        "4) 127.0.0.1 did not match statically defined Ipv4.\n"
        "5) 127.0.0.1 is not of same IP version as statically defined IP.\n"
    )
    assert status("10.0.0.1", "127.0.0.1")[0] == 200  # the first item that passes wins
    assert status("10.0.0.1", enabled=False)[0] == 200  # switched off: everything passes
    assert status(enabled=True)[0] == 200  # on, but no items: everything passes
    assert len(double.queue) == 7


def test_whitelist_with_an_unknown_algorithm_or_credential(double: JenkinsDouble):
    double.add_job("mlci", pipeline_xml())
    body = json.dumps(push_payload()).encode()
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": "sha256=00"}
    hmac_whitelist(double, hmac_algorithm="HmacSHA3")  # Mac.getInstance fails: no 403 but 500
    response = invoke(double, params={"token": GWT_TOKEN}, data=body, headers=headers)
    assert response.status_code == 500
    hmac_whitelist(double, hmac_credential_id="missing")
    response = invoke(double, params={"token": GWT_TOKEN}, data=body, headers=headers)
    assert response.status_code == 403
    assert "1) Was unable to find secret text credential missing\n" in response.json()["message"]
    assert double.queue == []
    with pytest.raises(ValueError, match="unknown whitelist item keys"):
        double.set_gwt_whitelist(True, [{"hostname": "x"}])


# ----------------------------------------------------------------------------------------------
# Permanent inbound agents.


def test_agents_are_listed_offline_until_they_connect(double: JenkinsDouble):
    double.add_node("gpu-1", "gpu linux", executors=2, mode="EXCLUSIVE")
    double.add_node("cpu-1", "linux")
    server = client(double)
    assert server.get_nodes() == [
        {"name": "Built-In Node", "offline": False},
        {"name": "cpu-1", "offline": True},
        {"name": "gpu-1", "offline": True},
    ]
    assert [n["icon"] for n in server.get_nodes_with_info()] == [
        "symbol-computer",
        "symbol-computer-offline",
        "symbol-computer-offline",
    ]
    info = server.get_node_info("gpu-1")
    assert info["_class"] == "hudson.slaves.SlaveComputer"
    assert (info["displayName"], info["numExecutors"], info["offline"]) == ("gpu-1", 2, True)
    assert (info["jnlpAgent"], info["launchSupported"], info["offlineCause"]) == (True, False, None)
    assert info["assignedLabels"] == [{"name": "gpu-1"}, {"name": "linux"}, {"name": "gpu"}]
    assert len(info["executors"]) == 2 and info["idle"] is True
    assert server.get_node_info("Built-In Node")["_class"] == "hudson.model.Hudson$MasterComputer"
    assert server.node_exists("cpu-1") and not server.node_exists("nope")
    computers = requests.get(
        double.url + "/computer/api/json", auth=("admin", double.api_token), timeout=5
    ).json()
    assert computers["totalExecutors"] == 2  # offline agents' executors do not count
    assert double.nodes["gpu-1"]["mode"] == "EXCLUSIVE"
    with pytest.raises(ValueError, match="already exists"):
        double.add_node("gpu-1", "gpu")


def jnlp_arguments(text: str) -> list[str]:
    root = ET.fromstring(text)
    assert root.tag == "jnlp"
    return [a.text for a in root.findall("application-desc/argument")]


def test_the_agent_jnlp_file_carries_the_secret_first(double: JenkinsDouble):
    double.add_node("gpu-1", "gpu")
    double.add_node("ws-1", "gpu", remote_fs="/agent", web_socket=True)
    auth = ("admin", double.api_token)
    response = requests.get(double.url + "/computer/gpu-1/jenkins-agent.jnlp", auth=auth, timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/x-java-jnlp-file"
    secret = double.agent_secret("gpu-1")
    assert re.fullmatch(r"[0-9a-f]{64}", secret)
    assert response.text == (
        f"<jnlp><application-desc><argument>{secret}</argument><argument>gpu-1</argument>"
        "<argument>-workDir</argument><argument>/home/jenkins/agent</argument>"
        "<argument>-internalDir</argument><argument>remoting</argument>"
        f"<argument>-url</argument><argument>{double.url}/</argument></application-desc></jnlp>"
    )
    double.root_url = "http://jenkins:8080"
    legacy = requests.get(double.url + "/computer/ws-1/slave-agent.jnlp", auth=auth, timeout=5)
    assert jnlp_arguments(legacy.text) == [
        double.agent_secret("ws-1"), "ws-1", "-webSocket", "-workDir", "/agent",
        "-internalDir", "remoting", "-url", "http://jenkins:8080/",
    ]  # fmt: skip
    assert double.agent_secret("ws-1") != secret
    missing = requests.get(double.url + "/computer/nope/jenkins-agent.jnlp", auth=auth, timeout=5)
    assert missing.status_code == 404
    with pytest.raises(KeyError):
        double.agent_secret("nope")


def test_the_agent_jnlp_file_needs_agent_connect(double: JenkinsDouble):
    double.add_node("gpu-1", "gpu")
    url = double.url + "/computer/gpu-1/jenkins-agent.jnlp"
    anonymous = requests.get(url, timeout=5)
    assert anonymous.status_code == 403
    assert anonymous.headers["X-Required-Permission"] == "hudson.model.Hudson.Read"
    double.anonymous_read = True
    anonymous = requests.get(url, timeout=5)
    assert anonymous.status_code == 403
    assert anonymous.headers["X-Required-Permission"] == "hudson.model.Computer.Connect"
    assert "Authentication required" in anonymous.text
    assert double.agent_secret("gpu-1") not in anonymous.text
    token = double.add_user("bob", "bob-password", admin=False)
    bob = requests.get(url, auth=("bob", token), timeout=5)
    assert bob.status_code == 403
    assert bob.headers["X-You-Are-Authenticated-As"] == "bob"
    assert "bob is missing the Agent/Connect permission" in bob.text
    assert requests.get(url, auth=("bob", token), timeout=5).status_code == 403
    # ?encrypt=true needs no permission at all: only the agent's secret decrypts the answer.
    double.anonymous_read = False
    encrypted = requests.get(url, params={"encrypt": "true"}, timeout=5)
    assert encrypted.status_code == 200
    assert encrypted.headers["Content-Type"] == "application/octet-stream"
    from cryptography.hazmat.decrepit.ciphers.modes import CFB8
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

    key = bytes.fromhex(double.agent_secret("gpu-1"))[:16]
    iv, data = encrypted.content[:16], encrypted.content[16:]
    decryptor = Cipher(algorithms.AES(key), CFB8(iv)).decryptor()
    plain = (decryptor.update(data) + decryptor.finalize()).decode()
    assert jnlp_arguments(plain)[:2] == [double.agent_secret("gpu-1"), "gpu-1"]


# ----------------------------------------------------------------------------------------------
# Builds for a runner outside the double.

PARAMETERS_REF = """
    <hudson.model.ParametersDefinitionProperty>
      <parameterDefinitions>
        <hudson.model.StringParameterDefinition>
          <name>ref</name>
          <defaultValue>refs/heads/none</defaultValue>
          <trim>false</trim>
        </hudson.model.StringParameterDefinition>
        <hudson.model.StringParameterDefinition>
          <name>MODEL</name>
          <defaultValue> wine </defaultValue>
          <trim>true</trim>
        </hudson.model.StringParameterDefinition>
        <hudson.model.BooleanParameterDefinition>
          <name>PUBLISH</name>
          <defaultValue>false</defaultValue>
        </hudson.model.BooleanParameterDefinition>
      </parameterDefinitions>
    </hudson.model.ParametersDefinitionProperty>"""


def test_take_started_builds_hands_each_started_build_over_once(double: JenkinsDouble):
    double.add_job("mlci", pipeline_xml(extra_properties=PARAMETERS_REF))
    server = client(double)
    server.build_job("mlci", {"MODEL": "iris", "PUBLISH": "true"})
    invoke(double, params={"token": GWT_TOKEN}, json=push_payload())
    assert double.take_started_builds() == []  # nothing left the queue yet
    double.start_queued_builds()
    manual, pushed = double.take_started_builds()
    assert double.take_started_builds() == []
    assert (manual.job, manual.number, manual.building) == ("mlci", 1, True)
    assert manual.parameters == {"ref": "refs/heads/none", "MODEL": "iris", "PUBLISH": "true"}
    assert manual.cause_classes == ("hudson.model.Cause$UserIdCause",)
    assert manual.variables == {}
    # The trigger: parameters named like its variables take their values; others keep their
    # defaults; the variables themselves reach the build through its cause.
    assert pushed.number == 2
    assert pushed.parameters == {"ref": "refs/heads/main", "MODEL": "wine", "PUBLISH": "false"}
    assert pushed.variables["commit"] == SHA
    assert pushed.causes == ("Push of refs/heads/main",)
    assert pushed.cause_classes == ("org.jenkinsci.plugins.gwt.GenericCause",)
    # The queue item carried the trigger's uuid parameter too; a Pipeline's params still see it.
    assert set(double.queue[1].parameters) == {
        "ref", "MODEL", "PUBLISH", "jenkins-generic-webhook-trigger-plugin_uuid"
    }  # fmt: skip
    assert double.queue[1].variables["ref"] == "refs/heads/main"
    assert "jenkins-generic-webhook-trigger-plugin_uuid" in pushed.params
    build = server.get_build_info("mlci", 2)
    [action] = [a for a in build["actions"] if a.get("_class") == "hudson.model.ParametersAction"]
    assert {p["name"]: p["value"] for p in action["parameters"]} == {
        "ref": "refs/heads/main", "MODEL": "wine", "PUBLISH": False
    }  # fmt: skip
    double.finish_build("mlci", 2, "UNSTABLE")
    assert double.builds["mlci"][1].result == "UNSTABLE"


def test_the_trigger_queues_one_build_per_invocation_unless_told_otherwise(double: JenkinsDouble):
    double.add_job("mlci", pipeline_xml())
    several = "\n          <allowSeveralTriggersPerBuild>true</allowSeveralTriggersPerBuild>"
    double.add_job("folding", pipeline_xml(token="fold", extra_trigger=several))
    for token in (GWT_TOKEN, GWT_TOKEN, "fold", "fold"):
        invoke(double, params={"token": token}, json=push_payload())
    assert [q.job for q in double.queue] == ["mlci", "mlci", "folding"]
    assert double.queue[0].parameters.keys() == {"jenkins-generic-webhook-trigger-plugin_uuid"}
    assert double.queue[2].parameters == {}
    double.start_queued_builds()
    assert [b.parameters for b in double.take_started_builds()] == [{}, {}, {}]


def test_build_and_build_with_parameters_on_a_parameterized_job(double: JenkinsDouble):
    double.add_job("mlci", pipeline_xml(extra_properties=PARAMETERS_REF))
    auth = ("admin", double.api_token)
    url = double.url + "/job/mlci/"
    # build without a json form never builds with defaults (Stapler's getSubmittedForm).
    bare = requests.post(url + "build", auth=auth, timeout=5)
    assert (bare.status_code, "Nothing is submitted" in bare.text) == (400, True)
    other = requests.post(url + "build", params={"delay": "0sec"}, auth=auth, timeout=5)
    assert (other.status_code, "This page expects a form submission" in other.text) == (400, True)
    with pytest.raises(requests.HTTPError, match="400"):
        client(double).build_job("mlci")
    # With a form: only the submitted values (no defaults) ...
    form = {"json": json.dumps({"parameter": {"name": "MODEL", "value": " iris "}})}
    posted = requests.post(url + "build", data=form, auth=auth, timeout=5, allow_redirects=False)
    assert posted.status_code == 201
    assert double.queue[-1].parameters == {"MODEL": "iris"}
    # ... and the same form while that item waits folds into it: Queue.schedule gives null.
    again = requests.post(url + "build", data=form, auth=auth, timeout=5, allow_redirects=False)
    assert (again.status_code, again.headers["Location"]) == (302, url)
    # buildWithParameters fills in the defaults (trimmed where the definition says so).
    defaults = requests.post(url + "buildWithParameters", auth=auth, timeout=5)
    assert defaults.status_code == 201
    assert double.queue[-1].parameters == {
        "ref": "refs/heads/none", "MODEL": "wine", "PUBLISH": "false"
    }  # fmt: skip
    folded = requests.post(url + "buildWithParameters", auth=auth, timeout=5, allow_redirects=False)
    assert folded.status_code == 303  # JENKINS-66105: the waiting item, "See Other"
    assert folded.headers["Location"] == defaults.headers["Location"]
    twice = requests.post(
        url + "buildWithParameters", params=[("MODEL", "a"), ("MODEL", "b")], auth=auth, timeout=5
    )
    assert twice.status_code == 500
    double.start_queued_builds()
    first, second = double.take_started_builds()
    assert first.parameters == {"MODEL": "iris"}
    assert first.params == {"ref": "refs/heads/none", "MODEL": "iris", "PUBLISH": "false"}
    assert second.parameters == second.params
    assert double.mutation_count("build") == 2 and double.mutation_count("buildWithParameters") == 2
