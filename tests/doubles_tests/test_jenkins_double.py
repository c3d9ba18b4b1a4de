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

import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest
import requests

import jenkins as python_jenkins
from tests.doubles.fixtures_jenkins import jenkins  # noqa: F401  (registers the fixture)
from tests.doubles.jenkins import JenkinsDouble, identity_transform

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
    import json

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
