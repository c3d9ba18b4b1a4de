"""Pytest fixture for the Jenkins double: import ``jenkins`` into a conftest or test module.

The fixture's name shadows python-jenkins' module name ``jenkins``; where both are needed,
import the library under another name (``import jenkins as python_jenkins``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .jenkins import JenkinsDouble


@pytest.fixture
def jenkins() -> Iterator[JenkinsDouble]:
    """A fresh Jenkins double, started before the test and stopped after it.

    The base URL is ``jenkins.url``; log in as ``admin`` / ``admin`` (password) or ``admin`` /
    ``jenkins.api_token``. CSRF protection is on, anonymous users may read nothing, queue items
    wait one poll and builds run for one poll before they end with ``SUCCESS``.
    """
    with JenkinsDouble() as double:
        yield double
