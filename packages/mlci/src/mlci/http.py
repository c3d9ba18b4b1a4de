"""HTTP sessions for every service mlci talks to: one timeout on every call and urllib3's
``Retry`` for the failures a restarting server gives.

A connection that is refused or reset before the request is sent is retried for any method
(nothing reached the server); a 502, 503 or 504 is retried for the idempotent methods only,
honouring ``Retry-After``. After the last try the response is returned as it is, so callers
keep their own messages for each status. ``requests`` has no session-wide timeout, hence the
small subclass.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # requests is imported when a session is made: the CLI starts faster
    import requests

RETRIES = 2  # tries after the first
BACKOFF = 0.5  # seconds, doubled on each try after the second (urllib3's backoff_factor)
RETRY_STATUS = (502, 503, 504)
USER_AGENT = "mlci"


def session(
    timeout: float,
    *,
    auth: tuple[str, str] | None = None,
    retries: int = RETRIES,
    backoff: float = BACKOFF,
) -> requests.Session:
    """A session whose calls time out after ``timeout`` seconds unless told otherwise, and
    retry as the module docstring says (``retries=0``: never)."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    class TimeoutSession(requests.Session):
        def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("timeout", timeout)
            return super().request(method, url, *args, **kwargs)

    retry = Retry(
        total=retries,
        connect=retries,
        read=False,  # a request that reached the server is not sent twice (raised as is)
        status=retries,
        backoff_factor=backoff,
        status_forcelist=RETRY_STATUS,
        allowed_methods=Retry.DEFAULT_ALLOWED_METHODS,
        raise_on_status=False,
        respect_retry_after_header=True,
    )
    http = TimeoutSession()
    adapter = HTTPAdapter(max_retries=retry)
    http.mount("http://", adapter)
    http.mount("https://", adapter)
    http.headers["User-Agent"] = USER_AGENT
    if auth is not None:
        http.auth = auth
    return http
