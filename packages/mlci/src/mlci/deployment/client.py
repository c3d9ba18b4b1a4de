"""The deployment's HTTP calls to slots and proxies, through :func:`mlci.http.session`.

Each request is sent once (``retries=0``): the callers poll, measure latency or report the
status themselves.
"""

from __future__ import annotations

import json
from typing import Any


def http(
    method: str,
    url: str,
    *,
    body: Any = None,
    token: str | None = None,
    timeout: float = 10.0,
) -> tuple[int, dict[str, str], bytes]:
    """One request: (status, headers, body); a connection failure raises OSError."""
    from mlci.http import session

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    with session(timeout, retries=0) as calls:
        # requests' errors are OSErrors: a refused connection or a timeout raises one.
        resp = calls.request(method, url, data=data, headers=headers)
        return resp.status_code, dict(resp.headers), resp.content


def answers(url: str, timeout: float = 2.0) -> bool:
    try:
        return http("GET", url, timeout=timeout)[0] == 200
    except (OSError, ValueError):
        return False
