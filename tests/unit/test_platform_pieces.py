"""Pure pieces of the wiring and the readiness wait (no server)."""

from __future__ import annotations

import string
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from mlci.platform import readiness
from mlci.platform.wire import canonical_xml, render_job, shown_url, webhook_url, without_query

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = (REPO_ROOT / "jenkins" / "job.xml.template").read_text()


def rendered(**kw: str) -> str:
    values = {"clone_url": "http://gitbucket:8080/git/mlci/mlci.git",
              "ref_filter": "^refs/(heads/main|tags/v.+)$", "webhook_token": "t0k"}  # fmt: skip
    return render_job(TEMPLATE, **{**values, **kw})


def test_rendered_job_escapes_values_and_keeps_the_commit_branch_spec() -> None:
    xml = rendered(clone_url="http://h/git/a&b/<r>.git", ref_filter="^refs/heads/(a|b)$")
    root = ET.fromstring(xml)
    scm = root.find("definition/scm")
    assert scm is not None
    assert scm.findtext("userRemoteConfigs/hudson.plugins.git.UserRemoteConfig/url") == (
        "http://h/git/a&b/<r>.git"
    )
    assert scm.findtext("branches/hudson.plugins.git.BranchSpec/name") == "${commit}"
    assert "$$" not in xml and string.Template(TEMPLATE).is_valid()


def test_canonical_form_ignores_jenkins_rewriting_but_not_content() -> None:
    mine = rendered()
    # What Jenkins hands back: declaration rewritten, comments outside the root dropped,
    # whitespace between elements gone, empty elements collapsed, plugin versions added.
    root = ET.fromstring(mine)
    root.set("plugin", "workflow-job@1400.v1")
    theirs = '<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(root, encoding="unicode")
    theirs = theirs.replace("<spec></spec>", "<spec/>")
    assert canonical_xml(theirs) == canonical_xml(mine)
    assert canonical_xml(rendered(webhook_token="other")) != canonical_xml(mine)


def test_hook_urls_are_matched_without_the_token_and_shown_masked() -> None:
    url = webhook_url("http://jenkins:8080", "s3cr3t/+")
    assert url == "http://jenkins:8080/generic-webhook-trigger/invoke?token=s3cr3t/%2B"
    assert without_query(url) == without_query(webhook_url("http://JENKINS:8080/", "x"))
    assert "s3cr3t" not in shown_url(url) and shown_url(url).endswith("token=********")


def test_wait_until_ready_backs_off_reports_changes_and_gives_up_at_the_deadline() -> None:
    now = [0.0]
    sleeps: list[float] = []
    answers = iter([(False, "starting"), (False, "starting"), (True, "ready")])
    lines: list[str] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    probe = readiness.Probe("X", "http://x", lambda: next(answers))
    readiness.wait_until_ready([probe], 60, lines.append, sleep=sleep, clock=lambda: now[0])
    assert sleeps == [1.0, 1.5]
    assert lines == ["platform: X (http://x): starting", "platform: X (http://x): ready"]

    never = readiness.Probe("Y", "http://y", lambda: (False, "DOWN"))
    with pytest.raises(readiness.PlatformNotReady, match=r"not ready after 5 s: Y \(DOWN\)"):
        readiness.wait_until_ready([never], 5, lines.append, sleep=sleep, clock=lambda: now[0])
