"""HTTP for every network path of appc (registries, discovery, image and key downloads).

One policy everywhere: TLS verified unless told otherwise (or a private CA file),
redirects followed by hand so that HTTPS → HTTP is refused without the insecure
option and credentials never follow a redirect to another host, 429/5xx answers and
dropped connections retried with exponential backoff (``Retry-After`` honoured and
bounded), and error messages that name the URL, never a credential.
"""

from __future__ import annotations

import datetime
import email.utils
import re
import threading
import time
import urllib.parse
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import attrs
import requests

from appc.errors import FetchError

__all__ = ["RETRY_STATUS", "Transport", "TransportOptions", "reason", "retry_after"]

#: Statuses worth trying again.
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_MAX_REDIRECTS = 10
_SSL_REASON = re.compile(r"\[SSL: [A-Z_]+\] [^'\"()]+")
_OS_REASON = re.compile(r"\[Errno -?\d+\] [^'\"()]+")
_CONNECTION_ERRORS = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


def reason(err: BaseException) -> str:
    """A short, credential-free description of a transport exception."""
    text = str(err)
    for pattern in (_SSL_REASON, _OS_REASON):
        match = pattern.search(text)
        if match:
            return match.group(0).strip()
    for marker in ("Caused by ", "(Caused by"):
        if marker in text:
            text = text.split(marker, 1)[1].strip("() ")
    return text[:300]


@attrs.frozen(kw_only=True)
class TransportOptions:
    """How to talk HTTP.

    :param insecure_allow_http: allow plain HTTP, and redirects from HTTPS to HTTP.
    :param insecure_skip_verify: do not verify TLS certificates.
    :param ca_file: a PEM bundle of extra trusted CAs.
    :param retries: how many times a failed request is tried again.
    :param backoff: the first retry delay in seconds (doubled each time, at most
        *max_delay*).
    :param timeout: seconds to connect, and to wait for each read.
    :param max_delay: the longest wait between two attempts, also for a server's
        ``Retry-After`` (a server cannot make a client wait for an hour).
    """

    insecure_allow_http: bool = False
    insecure_skip_verify: bool = False
    ca_file: str | None = None
    retries: int = 4
    backoff: float = 0.5
    timeout: float = 30.0
    user_agent: str = "appc/0.1"
    max_delay: float = 30.0


class Transport:
    """Requests with appc's policy; thread-safe (one session per thread)."""

    def __init__(self, options: TransportOptions | None = None) -> None:
        self.options = options or TransportOptions()
        self._local = threading.local()

    def session(self) -> requests.Session:
        """This thread's HTTP session."""
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["User-Agent"] = self.options.user_agent
            session.verify = self.verify
            self._local.session = session
        return session

    @property
    def verify(self) -> bool | str:
        """What to verify TLS certificates with: ``False``, the CA file, or ``True`` (system CAs).

        It is passed with every request: requests lets ``REQUESTS_CA_BUNDLE`` and
        ``CURL_CA_BUNDLE`` override a *session's* ``verify``, which would silently ignore
        both ``ca_file`` and ``insecure_skip_verify``.
        """
        if self.options.insecure_skip_verify:
            return False
        return self.options.ca_file or True

    def close(self) -> None:
        """Close this thread's session."""
        session = getattr(self._local, "session", None)
        if session is not None:
            session.close()
            self._local.session = None

    def send(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        stream: bool = False,
        data: Any = None,
    ) -> requests.Response:
        """One request, redirects followed by hand.

        :raises FetchError: TLS failure, HTTPS→HTTP redirect without permission, a
            redirect loop, or a plain-HTTP URL without ``insecure_allow_http``.
        :raises requests.exceptions.RequestException: connection errors (for retrying).

        Errors name the URL asked for; a redirect target is shown without its query
        (signed storage URLs carry credentials there).
        """
        asked = url
        headers = dict(headers or {})
        if url.startswith("http:") and not self.options.insecure_allow_http:
            raise FetchError("plain HTTP is not allowed (use the insecure HTTP option)", url=url)
        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore"
            )  # urllib3's InsecureRequestWarning when TLS checks are off
            for _ in range(_MAX_REDIRECTS + 1):
                try:
                    response = self.session().request(
                        method,
                        url,
                        headers=headers,
                        stream=stream,
                        data=data,
                        allow_redirects=False,
                        verify=self.verify,
                        timeout=(self.options.timeout, self.options.timeout),
                    )
                except requests.exceptions.SSLError as err:
                    where = f" (redirected to {_shown(url)})" if url != asked else ""
                    raise FetchError(f"TLS error{where}: {reason(err)}", url=asked) from None
                if (
                    response.status_code not in (301, 302, 303, 307, 308)
                    or "Location" not in response.headers
                ):
                    return response
                target = urllib.parse.urljoin(url, response.headers["Location"])
                response.close()
                if target.startswith("http:") and not self.options.insecure_allow_http:
                    raise FetchError(
                        f"refusing redirect to plain HTTP ({_shown(target)})", url=asked
                    )
                if urllib.parse.urlsplit(target).netloc != urllib.parse.urlsplit(url).netloc:
                    headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
                if response.status_code == 303:
                    method, data = "GET", None
                url = target
            raise FetchError(f"too many redirects (more than {_MAX_REDIRECTS})", url=asked)

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | Callable[[], dict[str, str]] | None = None,
        stream: bool = False,
        data: Any = None,
        ok: Iterable[int] = (200,),
        on_status: Callable[[requests.Response], bool] | None = None,
    ) -> requests.Response:
        """Send with retries; return a response whose status is in *ok*.

        :param headers: a dict, or a function giving fresh headers for each attempt.
        :param on_status: called with any other response before it is judged; return
            True to send again (used to answer authentication challenges).
        :raises FetchError: after the retries, or for another status.
        """
        wanted = set(ok)
        delay = self.options.backoff
        attempt = 0
        while True:
            fresh = headers() if callable(headers) else headers
            try:
                response = self.send(method, url, headers=fresh, stream=stream, data=data)
            except _CONNECTION_ERRORS as err:
                if attempt >= self.options.retries or callable(getattr(data, "read", None)):
                    raise FetchError(
                        f"connection failed{_attempts(attempt)}: {reason(err)}", url=url
                    ) from None
                attempt += 1
                time.sleep(min(delay, self.options.max_delay))
                delay = min(delay * 2, self.options.max_delay)
                continue
            if response.status_code in wanted:
                return response
            if on_status is not None and on_status(response):
                continue
            if response.status_code in RETRY_STATUS and attempt < self.options.retries:
                attempt += 1
                wait = min(retry_after(response, delay), self.options.max_delay)
                response.close()
                time.sleep(wait)
                delay = min(delay * 2, self.options.max_delay)
                continue
            error = status_error(response, url)
            if attempt and response.status_code in RETRY_STATUS:
                error.message += _attempts(attempt)
            raise error


def _shown(url: str) -> str:
    """*url* without credentials, query or fragment (for messages)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(
        (parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", "")
    )


def _attempts(retried: int) -> str:
    """`` after N attempts`` once a request was retried (empty otherwise)."""
    return f" after {retried + 1} attempts" if retried else ""


def retry_after(response: requests.Response, default: float) -> float:
    """The seconds a response's ``Retry-After`` asks to wait (a number of seconds or an
    HTTP date), else *default*; the caller bounds it."""
    value = response.headers.get("Retry-After", "").strip()
    if value.isdigit():
        return float(value)
    if value:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return default
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.UTC)
        return max(0.0, (when - datetime.datetime.now(datetime.UTC)).total_seconds())
    return default


def status_error(response: requests.Response, url: str) -> FetchError:
    """Turn an error response into a FetchError, with a registry's own explanation if any."""
    status = response.status_code
    detail = ""
    try:
        body = response.json()
        errors = body.get("errors") if isinstance(body, dict) else None
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            detail = f"{errors[0].get('code', '')}: {errors[0].get('message', '')}".strip(": ")
    except ValueError:
        pass
    finally:
        response.close()
    meaning = {
        401: "unauthorized",
        403: "forbidden",
        404: "not found",
        413: "too large",
        429: "too many requests",
    }.get(status, "error")
    message = f"HTTP {status} {meaning}" + (f" ({detail})" if detail else "")
    return FetchError(message, url=url, status=status)
