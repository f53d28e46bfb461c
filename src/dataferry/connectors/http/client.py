"""GET requests with timeouts, retries and error messages that never show a secret.

Transient failures (connection errors and timeouts, ``408``, ``425``, ``429`` and ``5xx``
except ``501``/``505``) are retried ``len(delays)`` times, waiting ``delays[i]`` seconds
(times a random factor 0.5..1.5) or what ``Retry-After`` asks (capped at
``max_retry_after``); then ``TransientError``, which the runner retries later. Any other
``4xx`` is a terminal ``SourceError`` with the status, the URL and the start of the
response body. Secrets (the token, header values given as ``${env:..}``/``${file:..}`` or
named like a credential, a password in the URL) are replaced by ``***`` in every message.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import httpx

from dataferry.errors import SourceError, TransientError
from dataferry.secrets import Secret, redact

__all__ = ["Fetcher"]

TRANSIENT_STATUS = frozenset({408, 425, 429} | set(range(500, 600)) - {501, 505})
_SENSITIVE = ("authorization", "token", "key", "secret", "password", "cookie", "session")
_BODY_SHOWN = 300


class Fetcher:
    """Sends GET requests for one source, with its headers, token and retry policy."""

    def __init__(
        self,
        name: str,
        headers: Mapping[str, Secret],
        token: Secret | None,
        *,
        timeout: httpx.Timeout,
        delays: tuple[float, ...],
        max_retry_after: float,
    ) -> None:
        self.name = name
        self._headers = dict(headers)
        if token is not None:
            self._headers["Authorization"] = Secret(f"Bearer {token.reveal()}", "token")
        self._secrets = [token] if token is not None else []
        self._secrets += [s for k, s in headers.items() if s.reference != "literal"
                          or any(word in k.lower() for word in _SENSITIVE)]
        self.delays, self.max_retry_after = delays, max_retry_after
        self._client = httpx.Client(timeout=timeout, follow_redirects=True)

    def close(self) -> None:
        self._client.close()

    def safe(self, text: str) -> str:
        """``text`` without any secret of this source (for messages)."""
        return redact(text, *self._secrets)

    def show(self, url: httpx.URL | str) -> str:
        """A URL as messages show it: no password, no secret."""
        url = httpx.URL(url)
        if url.password:
            url = url.copy_with(username=url.username, password="***")
        return self.safe(str(url))

    def open(self, url: httpx.URL, stream: Callable[[httpx.Response], bool]) -> httpx.Response:
        """A ``2xx`` response to ``GET url``, after retries; the caller closes it.

        When ``stream(response)`` is false the body is read here (a connection lost while
        reading it is retried too); otherwise the caller streams it. Raises
        ``TransientError`` when retries are exhausted, ``SourceError`` for a 4xx.
        """
        headers = {key: value.reveal() for key, value in self._headers.items()}
        wait, problem = 0.0, ""
        for attempt in range(len(self.delays) + 1):
            if attempt:
                time.sleep(wait)
            response, problem, retry_after = self._attempt(url, headers, stream)
            if response is not None:
                return response
            if attempt < len(self.delays):
                wait = self.delays[attempt] * random.uniform(0.5, 1.5)
                if retry_after is not None:
                    wait = min(retry_after, self.max_retry_after)
        raise TransientError(self.safe(
            f"{self.name}: GET {self.show(url)} failed {len(self.delays) + 1} times; last: "
            f"{problem}"))

    def _attempt(
        self, url: httpx.URL, headers: dict[str, str], stream: Callable[[httpx.Response], bool]
    ) -> tuple[httpx.Response | None, str, float | None]:
        """One GET: the response, or why it failed transiently and any ``Retry-After``."""
        try:
            request = self._client.build_request("GET", url, headers=headers)
            response = self._client.send(request, stream=True)
        except (httpx.UnsupportedProtocol, httpx.InvalidURL, httpx.TooManyRedirects) as error:
            raise SourceError(self.safe(f"{self.name}: cannot GET {self.show(url)}: {error}")) \
                from None
        except httpx.TransportError as error:
            return None, _describe(error), None
        status = response.status_code
        if status >= 400:
            problem = f"HTTP {status} {response.reason_phrase}{self._body(response)}"
            if status not in TRANSIENT_STATUS:
                raise SourceError(self.safe(f"{self.name}: GET {self.show(response.url)} "
                                            f"failed: {problem}; {_hint(status)}"))
            return None, problem, _retry_after(response.headers.get("Retry-After"))
        try:
            if not stream(response):
                response.read()
        except httpx.TransportError as error:
            response.close()
            return None, f"{_describe(error)} while reading the response", None
        return response, "", None

    def _body(self, response: httpx.Response) -> str:
        try:
            response.read()
            text = " ".join(response.text[:_BODY_SHOWN].split())
        except (httpx.HTTPError, UnicodeDecodeError):
            text = ""
        finally:
            response.close()
        return f": {text}" if text else ""


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}".rstrip(": ")


def _hint(status: int) -> str:
    if status in (401, 403):
        return "check the source's token and headers (and that they grant access)"
    if status == 404:
        return "check the source's url and the dataset's endpoint"
    return "check the request the model describes (endpoint, pagination parameters)"


def _retry_after(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (a number or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
