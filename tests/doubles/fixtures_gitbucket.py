"""Pytest fixture for the GitBucket double: import ``gitbucket`` into a conftest (or a test
module) to use it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .gitbucket import GitBucketDouble


@pytest.fixture
def gitbucket() -> Iterator[GitBucketDouble]:
    """A fresh GitBucket double, started before the test and stopped after it.

    The base URL is ``gitbucket.url`` (the API lives under ``/api/v3``, repositories under
    ``/git/<owner>/<repo>.git``); ``root``/``root`` is the administrator until a test (or the
    code under test) changes the password through the sign-in and account-edit forms.
    """
    with GitBucketDouble() as double:
        yield double
