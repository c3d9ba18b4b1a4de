"""GitBucket's push payload, run through the job config mlci renders, as the plugin reads it.

The Generic Webhook Trigger resolves each JSONPath variable from the JSON body, substitutes
them into ``regexpFilterText`` and triggers when ``regexpFilterExpression`` finds a match
(Java's ``find()``, i.e. ``re.search``). The payload is shaped as GitBucket sends it, signed
with ``X-Hub-Signature-256`` as GitBucket signs it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from jsonpath_ng.ext import parse as parse_json_path

from mlci.platform.wire import render_job
from mlci.settings import load_settings

pytestmark = pytest.mark.contract

REPO_ROOT = Path(__file__).resolve().parents[2]
GWT = "org.jenkinsci.plugins.gwt"
TRIGGER = (
    "properties/org.jenkinsci.plugins.workflow.job.properties.PipelineTriggersJobProperty"
    f"/triggers/{GWT}.GenericTrigger"
)
SECRET = secrets.token_urlsafe(24)


def gitbucket_push(ref: str, after: str) -> tuple[bytes, dict[str, str]]:
    """A push delivery as GitBucket 4.4x writes it: compact JSON, HMACs of the exact bytes."""
    payload = {
        "pusher": {"name": "root", "email": "root@localhost"},
        "sender": {"login": "root", "type": "User", "site_admin": True},
        "ref": ref,
        "before": "0" * 40,
        "after": after,
        "commits": [],
        "repository": {
            "name": "mlci",
            "full_name": "mlci/mlci",
            "clone_url": "http://gitbucket:8080/git/mlci/mlci.git",
            "html_url": "http://gitbucket:8080/mlci/mlci",
        },
        "compare": "http://gitbucket:8080/mlci/mlci",
    }
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Github-Event": "push",
        "X-Hub-Signature-256": "sha256="
        + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
    }
    return body, headers


def job_trigger() -> ET.Element:
    platform = load_settings(root=REPO_ROOT, environ={}).platform
    xml = render_job(
        (REPO_ROOT / "jenkins" / "job.xml.template").read_text(),
        f"{platform.gitbucket_internal_url}/git/{platform.organisation}/{platform.repository}.git",
        platform.ref_filter,
        secrets.token_urlsafe(24),
    )
    trigger = ET.fromstring(xml).find(TRIGGER)
    assert trigger is not None
    return trigger


def evaluate(trigger: ET.Element, body: bytes) -> tuple[dict[str, str], bool]:
    document = json.loads(body)
    variables = {}
    for variable in trigger.findall(f"genericVariables/{GWT}.GenericVariable"):
        assert variable.findtext("expressionType") == "JSONPath"
        found = parse_json_path(variable.findtext("value")).find(document)
        variables[variable.findtext("key")] = str(found[0].value) if found else ""
    text = trigger.findtext("regexpFilterText") or ""
    for key, value in sorted(variables.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(f"${key}", value)
    return variables, re.search(trigger.findtext("regexpFilterExpression") or "", text) is not None


@pytest.mark.parametrize(
    ("ref", "builds"),
    [
        ("refs/heads/main", True),
        ("refs/tags/v1.2.0", True),
        ("refs/heads/feature", False),
        ("refs/heads/main-old", False),
        ("refs/tags/release-1", False),
        ("refs/heads/x/refs/heads/main", False),
    ],
)
def test_push_payload_resolves_and_is_filtered_like_the_plugin(ref: str, builds: bool) -> None:
    after = secrets.token_hex(20)
    body, headers = gitbucket_push(ref, after)
    signature = headers["X-Hub-Signature-256"].removeprefix("sha256=")
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(signature, expected)
    variables, triggered = evaluate(job_trigger(), body)
    assert variables == {
        "ref": ref,
        "commit": after,
        "clone_url": "http://gitbucket:8080/git/mlci/mlci.git",
    }
    assert triggered is builds


def test_a_form_encoded_delivery_resolves_nothing() -> None:
    # Why wire asks for content_type json: a form body has no $.ref at the top level.
    body = b'{"payload": ["{\\"ref\\":\\"refs/heads/main\\"}"]}'
    variables, triggered = evaluate(job_trigger(), body)
    assert variables["ref"] == "" and not triggered
