"""The interface every lookup provider implements (:class:`Provider`), the HTTP one most of
them build on (:class:`HttpProvider`), and how their failures read."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import msgspec
from nats.js import JetStreamContext

from shared.core.retryafter import parse_retry_after
from shared.lookups.schemas import LookupRequest, Verdict


def is_ip(host: str) -> bool:
    """True when ``host`` is an IPv4 or IPv6 address literal (a URL's host may be one)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class ProviderError(Exception):
    """The upstream could not answer (unreachable, timeout, bad answer).

    The message is the cause, first and short (``cannot connect: Connection refused``,
    ``HTTP 503``, ``timeout after 10 s``): it is what a table cell shows. Where the
    provider asked goes to ``data`` (e.g. ``{"upstream": "https://…"}``), shown with the
    result's details; never a secret (API keys travel in headers, not in URLs)."""

    def __init__(self, reason: str, *, data: Mapping[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.data: dict[str, Any] = dict(data or {})


def upstream(url: str) -> str:
    """``url`` fit to show: without user info, query or fragment (they may carry secrets
    or the indicator itself)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.split("?", 1)[0]
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host + (f":{port}" if port is not None else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def where(url: str) -> dict[str, str]:
    """An error's ``data``: which upstream answered (:func:`upstream`: never a key)."""
    return {"upstream": upstream(url)}


def os_error_text(exc: BaseException) -> str:
    """Why a connection failed, in the system's words: ``Connection refused``, ``Name or
    service not known`` (not asyncio's ``Connect call failed ('127.0.0.1', 9)``)."""
    if isinstance(exc, socket.gaierror):
        return exc.strerror or str(exc)
    if isinstance(exc, OSError) and exc.errno is not None and exc.errno > 0:
        return os.strerror(exc.errno)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def client_error_text(exc: BaseException) -> str:
    """The cause of an aiohttp client failure, short and human: ``cannot connect: Name or
    service not known``, ``server disconnected``, ``TLS certificate not trusted: …``."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate not trusted: {exc.certificate_error}"
    if isinstance(exc, aiohttp.ClientSSLError):
        return "TLS handshake failed"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect: {os_error_text(exc.os_error)}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    if isinstance(exc, aiohttp.TooManyRedirects):
        return "too many redirects"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "incomplete answer"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"HTTP {exc.status}" + (f" {exc.message}" if exc.message else "")
    if isinstance(exc, aiohttp.InvalidURL):
        return "invalid URL"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Throttled(ProviderError):
    """Upstream said slow down (HTTP 429): the whole provider pool pauses, the request
    waits and is asked again."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def refuse_throttle_or_key(
    label: str, status: int, headers: Mapping[str, str], where: Mapping[str, Any]
) -> None:
    """What an API's 429 (:class:`Throttled` after its ``Retry-After``) and 401/403 (its key
    refused) mean, raised; any other status returns for the provider to read."""
    if status == 429:
        raise Throttled(f"{label} HTTP 429", parse_retry_after(headers.get("Retry-After")))
    if status in (401, 403):
        raise ProviderError(f"HTTP {status}: API key refused", data=where)


def utc_time(value: Any) -> str | None:
    """An API's UTC time written without a zone (``2020-02-13 11:55:46``, ``… UTC``,
    ``2025-07-01T00:00:26.567000``) as ISO 8601, ``2020-02-13T11:55:46Z``; None for
    anything shorter or not a string."""
    if not isinstance(value, str) or len(value) < 19:
        return None
    return f"{value[:10]}T{value[11:19]}Z"


@dataclass(frozen=True)
class Answer:
    verdict: Verdict
    summary: str
    data: dict[str, Any] = field(default_factory=dict)
    ttl: float | None = None
    """How long the answer may be cached (None: the provider's default)."""


class Provider(ABC):
    name: str
    default_ttl: float = 3600.0
    looks_up_private: bool = False
    """Whether private, loopback and reserved addresses are worth asking about (DNS PTR)."""

    def configured(self) -> str | None:
        """None when ready; else why not (e.g. ``VIRUSTOTAL_API_KEY is not set``)."""
        return None

    def cache_salt(self) -> str:
        """Settings that change answers (upstream URL, nameservers…): part of the cache key."""
        return ""

    async def attach(self, js: JetStreamContext) -> None:  # noqa: B027 - optional hook
        """The bus, given by the runner before :meth:`open`: for a provider that keeps data
        of its own in a KV bucket (a list refreshed on a schedule, read by its lookups)."""

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Acquire sessions before the first lookup."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what :meth:`open` acquired."""

    @abstractmethod
    async def lookup(self, request: LookupRequest) -> Answer:
        """Look one indicator up; raise :class:`ProviderError` when upstream fails."""


MAX_ANSWER_BYTES = 16 * 2**20
"""The largest answer an HTTP provider reads: the biggest documented ones (a file report,
an indicator with its threat-intel pulses) are well under 1 MiB; past this it is no answer
of the API, and reading on would only grow the worker."""


class HttpProvider(Provider):
    """A provider that asks an HTTP API: one session per process, bounded timeouts, and
    connection failures turned into :class:`ProviderError` with a clear reason."""

    user_agent = "lookout/1 (+https://github.com/lookout)"

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._timeout, connect=min(5.0, self._timeout)),
            headers={"User-Agent": self.user_agent},
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def get_json(
        self, url: str, *, headers: dict[str, str], params: dict[str, str] | None = None
    ) -> tuple[int, Mapping[str, str], Any]:
        """(status, headers, decoded JSON body or None)."""
        return await self._json("GET", url, headers=headers, params=params)

    async def post_json(
        self,
        url: str,
        *,
        headers: dict[str, str],
        form: dict[str, str] | None = None,
        json: Any = None,
    ) -> tuple[int, Mapping[str, str], Any]:
        """POST ``form`` (``application/x-www-form-urlencoded``) or ``json``: (status,
        headers, decoded JSON body or None)."""
        body = msgspec.json.encode(json) if json is not None else None
        if body is not None:
            headers = {**headers, "Content-Type": "application/json"}
        return await self._json("POST", url, headers=headers, data=form if body is None else body)

    async def _json(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        params: dict[str, str] | None = None,
        data: Any = None,
    ) -> tuple[int, Mapping[str, str], Any]:
        assert self._session is not None, "open() first"
        about = where(url)
        try:
            async with self._session.request(
                method, url, headers=headers, params=params, data=data
            ) as response:
                raw = bytearray()
                async for chunk in response.content.iter_chunked(65536):
                    raw += chunk
                    if len(raw) > MAX_ANSWER_BYTES:
                        raise ProviderError(
                            f"answer larger than {MAX_ANSWER_BYTES // 2**20} MiB", data=about
                        )
                body: Any = None
                if raw:
                    with contextlib.suppress(ValueError):
                        body = msgspec.json.decode(raw)
                return response.status, response.headers, body
        except TimeoutError:
            raise ProviderError(f"timeout after {self._timeout:g} s", data=about) from None
        except aiohttp.ClientError as exc:
            raise ProviderError(client_error_text(exc), data=about) from None
