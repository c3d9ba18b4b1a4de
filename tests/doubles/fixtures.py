"""Pytest fixture for the SonarQube double: import ``sonarqube`` into a conftest to use it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .sonarqube import SonarQubeDouble


@pytest.fixture
def sonarqube() -> Iterator[SonarQubeDouble]:
    """A fresh SonarQube double, started before the test and stopped after it.

    The base URL is ``sonarqube.url``; the admin logs in as ``admin``/``admin`` until a test (or
    the code under test) changes the password through ``api/users/change_password``.
    """
    with SonarQubeDouble() as double:
        yield double
