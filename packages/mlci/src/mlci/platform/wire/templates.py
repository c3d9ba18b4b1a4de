"""The pieces of the wiring that need no server: the Jenkins jobs rendered from their
templates, how a stored job is compared with the template, and URLs safe to show."""

from __future__ import annotations

import string
import xml.etree.ElementTree as ET
from urllib.parse import quote, urlsplit, urlunsplit
from xml.sax.saxutils import escape

from mlci.platform.secrets import masked
from mlci.platform.wire.core import BRANCH

# The job builds the commit the trigger resolved ($commit, from the push payload's `after`);
# without a push (Build Now, Replay) the job parameter `commit` defaults to main's head.
BRANCH_SPEC = "${commit}"
# The nightly scoring job builds main's head.
SCORE_BRANCH_SPEC = f"refs/heads/{BRANCH}"


def slash(url: str) -> str:
    return url.rstrip("/") + "/"


def webhook_url(jenkins_internal_url: str, token: str) -> str:
    """The Generic Webhook Trigger endpoint GitBucket posts to, token in the query string.

    GitBucket hooks cannot send headers, so the query string is the plugin's documented way.
    """
    return f"{slash(jenkins_internal_url)}generic-webhook-trigger/invoke?token={quote(token)}"


def shown_url(url: str) -> str:
    """A URL for messages: any query string value masked."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    query = "&".join(
        f"{pair.partition('=')[0]}={masked(pair.partition('=')[2])}"
        for pair in parts.query.split("&")
    )
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def without_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.lower(), parts.path, "", ""))


def filter_expression(ref_filter: str) -> str:
    """The trigger's filter over "$ref $commit": an accepted ref, then a commit that exists.

    A deleted branch or tag still sends a push, with 40 zeros as ``after``; it must not start
    a build that can only fail at checkout. The ref filter must be anchored at both ends,
    since the plugin matches with ``find()``.
    """
    anchored = ref_filter.startswith("^") and ref_filter.endswith("$")
    if not anchored or ref_filter.endswith("\\$"):
        from mlci.errors import ConfigError

        raise ConfigError(
            f"platform.ref_filter {ref_filter!r} is not anchored (^...$)",
            "the Generic Webhook Trigger matches with find(): an unanchored filter accepts "
            "any ref that merely contains a match",
            'write it as ^...$, e.g. "^refs/(heads/main|tags/v.+)$"',
        )
    return f"^(?:{ref_filter[1:-1]}) (?!0{{40}}$)[0-9a-f]{{40}}$"


def _substitute(template: str, values: dict[str, str]) -> str:
    return string.Template(template).substitute({k: escape(v) for k, v in values.items()})


def render_job(template: str, clone_url: str, ref_filter: str, webhook_token: str) -> str:
    """jenkins/job.xml.template with XML-escaped values (string.Template.substitute)."""
    return _substitute(
        template,
        {
            "clone_url": clone_url,
            "branch_spec": BRANCH_SPEC,
            "filter_expression": filter_expression(ref_filter),
            "webhook_token": webhook_token,
        },
    )


def render_score_job(template: str, clone_url: str) -> str:
    """jenkins/job-score.xml.template with XML-escaped values."""
    return _substitute(template, {"clone_url": clone_url, "branch_spec": SCORE_BRANCH_SPEC})


def _parse(text: str | bytes) -> ET.Element:
    return ET.fromstring(text.encode("utf-8") if isinstance(text, str) else text)


def owned_part(stored: str | bytes, wanted: str) -> str:
    """``stored`` reduced to the elements ``wanted`` has: what mlci owns in the job.

    A build re-saves the job with what the Jenkinsfile's ``options`` declare (job properties
    and the declarative plugin's bookkeeping in ``<actions>``); those are Jenkins', not
    drift. Top-level elements and job properties that the template lacks are left out.
    """
    mine = _parse(wanted)
    root = _parse(stored)
    keep = {child.tag for child in mine}
    for child in list(root):
        if child.tag not in keep:
            root.remove(child)
    my_properties = mine.find("properties")
    properties = root.find("properties")
    if my_properties is not None and properties is not None:
        owned = {child.tag for child in my_properties}
        for child in list(properties):
            if child.tag not in owned:
                properties.remove(child)
    return ET.tostring(root, encoding="unicode")


def canonical_xml(text: str | bytes) -> str:
    """A job config in canonical form, for comparing what Jenkins stores with what we send.

    Jenkins rewrites config.xml (declaration, quoting, empty elements, escaping, whitespace
    outside the root), so bytes never compare. Comments, whitespace around text and the
    informational ``plugin`` attributes (Jenkins adds versions to them on a UI save) are left
    out.
    """
    root = _parse(text)
    for element in root.iter():
        element.attrib.pop("plugin", None)
    return ET.canonicalize(ET.tostring(root, encoding="unicode"), strip_text=True)
