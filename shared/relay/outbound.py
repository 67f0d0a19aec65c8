"""Targets that reach their service over HTTP: one session guarded against SSRF, and the
chat and incident services reached by POSTing JSON to a secret webhook URL."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from typing import Any, ClassVar, Self
from urllib.parse import urlsplit

import aiohttp
import msgspec
import yarl
from multidict import CIMultiDict

from shared.core import publicurl, ssrf
from shared.core.errors import ConfigError
from shared.core.secrets import Secret
from shared.core.settings import Settings
from shared.relay import silences
from shared.relay.config import TargetConfig, relay
from shared.relay.sources import Reading
from shared.relay.target import Delivery, PermanentError, RetryableError, Target
from shared.relay.templates import TemplateError


class RefusedDestination(ssrf.RefusedDestination, PermanentError):
    """The target's host resolves only to addresses lookout must not connect to: the
    delivery fails for good (dead-lettered with the reason, never retried)."""


class SessionTarget(Target):
    """A target that reaches its service through one HTTP session guarded against SSRF
    (:func:`shared.core.ssrf.session`): only public addresses, or those in the outbound
    allow-list ``LOOKOUT_OUTBOUND_ALLOW``; a refused address fails the delivery as a
    :class:`PermanentError`.

    :meth:`open` creates the session with the target's ``timeout`` and
    :meth:`session_headers`, :meth:`close` closes it, :attr:`session` is the open one."""

    def __init__(self, timeout: float, allow: Sequence[IPv4Network | IPv6Network] = ()) -> None:
        self._timeout = timeout
        self._allow = tuple(allow)  # LOOKOUT_OUTBOUND_ALLOW, see shared.core.ssrf
        self._session: aiohttp.ClientSession | None = None

    @abstractmethod
    def session_headers(self) -> dict[str, str]:
        """The headers of every request of the session (``User-Agent``, credentials…)."""

    @property
    def session(self) -> aiohttp.ClientSession:
        """The session :meth:`open` created; :class:`RuntimeError` when it is not open."""
        if self._session is None:
            raise RuntimeError(f"{type(self).__name__} {self.name!r}: open() first")
        return self._session

    async def open(self) -> None:
        self._session = ssrf.session(
            self._allow, self._timeout, headers=self.session_headers(), refused=RefusedDestination
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def secret_parts(url: str) -> list[str]:
    """The strings that would give a secret webhook URL away: the URL, its path and query,
    and any long path segment or query value (tokens, ``sig``), longest first."""
    parts = urlsplit(url)
    found = {url, url.split("?", 1)[0]}
    if len(parts.path) > 1:
        found.add(parts.path)
    if parts.query:
        found.add(parts.query)
        found.update(
            value
            for value in (item.partition("=")[2] for item in parts.query.split("&"))
            if len(value) >= 16
        )
    found.update(segment for segment in parts.path.split("/") if len(segment) >= 16)
    return sorted(found, key=len, reverse=True)


@dataclass(frozen=True, slots=True)
class WebhookAnswer:
    status: int
    headers: Mapping[str, str]
    text: str


class WebhookTarget(SessionTarget):
    """A chat or incident service reached by POSTing JSON to a secret webhook URL.

    Shared by the chat targets: one guarded HTTP session
    (:class:`SessionTarget`, ``User-Agent`` :attr:`user_agent`), rendering through the
    target's templates (a template error is permanent), timeouts and connection errors as
    retryable, and the URL scrubbed from every error text. Each target builds its payload
    and judges the service's answer itself: a 429 raises ``RetryableError`` with the wait
    the service asked for, and the runner paces (see :class:`shared.relay.target.Target`).
    """

    service: ClassVar[str] = "webhook"
    user_agent: ClassVar[str] = "lookout/1"
    public_url: str | None = None
    """``LOOKOUT_PUBLIC_URL``, for the "Silence similar" link (set by :meth:`from_settings`;
    None: no link)."""

    def __init__(
        self,
        config: TargetConfig,
        webhook_url: Secret,
        allow: Sequence[IPv4Network | IPv6Network] = (),
    ) -> None:
        super().__init__(config.timeout, allow)
        self.name = config.name
        self.config = config
        self._webhook = webhook_url
        self._secrets = secret_parts(webhook_url.reveal())

    @classmethod
    def from_settings(cls, config: TargetConfig, settings: Settings) -> Self:
        """The target for ``config`` with its secret ``webhook_url`` checked and the
        outbound allow-list."""
        secret = relay(settings).secret(config.name, "webhook_url")
        assert secret is not None  # required: config.load() refuses such a target without one
        parts = urlsplit(secret.reveal())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            # The value itself is a secret: name the key, never show it.
            raise ConfigError(f"target {config.name}: webhook_url must be an absolute https URL")
        target = cls(config, secret, allow=settings.outbound_allow)
        target.public_url = publicurl.public_url(settings)
        return target

    def __repr__(self) -> str:  # never the URL
        return f"{type(self).__name__}(name={self.name!r})"

    def session_headers(self) -> dict[str, str]:
        return {"User-Agent": self.user_agent}

    def silence_url(self, delivery: Delivery) -> str | None:
        """The web UI's form for a silence of notifications like this one, or None."""
        if self.public_url is None:
            return None
        return silences.similar_url(self.public_url, delivery.reading)

    def encode(
        self,
        build: Callable[[Reading, str | None, str | None, str | None, str | None], Any],
        delivery: Delivery,
    ) -> bytes:
        """The JSON body ``build`` makes for ``delivery`` (its reading: the message decoded
        once) with this target's templates and its "Silence similar" link."""
        template = self.config.template
        try:
            payload = build(
                delivery.reading,
                delivery.subject,
                template.title,
                template.body,
                self.silence_url(delivery),
            )
        except TemplateError as exc:
            raise PermanentError(str(exc)) from None
        return msgspec.json.encode(payload)

    async def post(self, url: str | yarl.URL, body: bytes, read: int = 1000) -> WebhookAnswer:
        """POST ``body``; the first ``read`` bytes of the answer."""
        session = self.session
        try:
            async with session.post(
                url,
                data=body,
                headers={"Content-Type": "application/json; charset=utf-8"},
                allow_redirects=False,
            ) as response:
                text = (await response.content.read(read)).decode("utf-8", "replace")
                return WebhookAnswer(response.status, CIMultiDict(response.headers), text)
        except TimeoutError:
            raise RetryableError(
                f"{self.service} did not answer within {self.config.timeout}s"
            ) from None
        except aiohttp.ClientError as exc:
            raise RetryableError(self.scrub(f"{type(exc).__name__}: {exc}")) from None

    def scrub(self, text: str) -> str:
        """``text`` without the webhook URL or any part that would give it away."""
        for secret in self._secrets:
            text = text.replace(secret, "[webhook]")
        return text
