"""The ``apprise`` target: one notification per delivery to any of the services the
Apprise library reaches, by an Apprise URL (a secret).

The title and body come from the target's templates (the defaults otherwise); the Apprise
message type from the risk (``failure`` from 70, ``warning`` from 40, else ``info``). Apprise
answers with a result, not an exception: a failure becomes the delivery's outcome through
the HTTP status its log names (``error=500.``) as :func:`raise_for_status` maps it (410
pauses the target, other 4xx are permanent), a timeout or no status is retried. Apprise does
not retry itself (``retry=0``): lookout's retries, pacing, pauses and dead letters apply.
Every error text has the URL's secret parts removed; only ``url(privacy=True)`` is logged.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from services.sinks.apprise.config import AppriseTargetConfig
from shared.core import logging as log
from shared.core.errors import ConfigError
from shared.core.settings import Settings
from shared.relay import templates
from shared.relay.config import relay
from shared.relay.target import (
    Delivery,
    PermanentError,
    RetryableError,
    Target,
    raise_for_status,
)
from shared.relay.templates import TemplateError

CONFIG = AppriseTargetConfig

_STATUS = re.compile(r"\berror=(\d{3})\b")
MIN_SECRET = 4
"""Parts of the URL at least this long are removed from error texts."""


def secret_parts(url: str) -> list[str]:
    """What would give an Apprise URL away: the URL, its host part (bot tokens live there:
    ``tgram://<token>/<chat>``), user and password, path segments, query values; longest
    first."""
    parts = urlsplit(url)
    found = {url, parts.netloc, parts.path, parts.query}
    found.update(unquote(p) for p in (parts.username, parts.password, parts.hostname) if p)
    found.update(segment for segment in parts.path.split("/"))
    found.update(value for _, value in parse_qsl(parts.query))
    return sorted((p for p in found if len(p) >= MIN_SECRET), key=len, reverse=True)


def notify_type(risk: int | None) -> str:
    if risk is None or risk < 40:
        return "info"
    return "failure" if risk >= 70 else "warning"


class AppriseTarget(Target):
    def __init__(self, config: AppriseTargetConfig, settings: Settings) -> None:
        secret = relay(settings).secret(config.name, "url")
        assert secret is not None  # required_secrets: the configuration has it
        self.name = config.name
        self.config = config
        self._url = secret.reveal().strip()
        self._secrets = secret_parts(self._url)
        self._log = log.get("sink").bind(target=config.name)

    def __repr__(self) -> str:  # never the URL
        return f"AppriseTarget(name={self.name!r})"

    async def open(self) -> None:
        import apprise  # only the sink of an apprise target pays for it

        service: Any = apprise.Apprise.instantiate(self._url)
        if service is None:
            raise ConfigError(f"target {self.name}: url is not a URL Apprise can use")
        self._log.info("apprise service", url=service.url(privacy=True))

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[url]")
        return text

    async def deliver(self, delivery: Delivery) -> None:
        template = self.config.template
        reading = delivery.reading
        try:
            rendered = templates.render(reading, template.title, template.body, delivery.subject)
        except TemplateError as exc:
            raise PermanentError(str(exc)) from None
        title, body = rendered.title, rendered.body
        kind = notify_type(reading.attributes.risk)
        try:
            status, messages = await asyncio.wait_for(
                asyncio.to_thread(self._notify, title, body, kind), self.config.timeout + 1
            )
        except TimeoutError:
            raise RetryableError(f"apprise: no answer within {self.config.timeout}s") from None
        if status == "success":
            return
        detail = self.scrub(messages[-1] if messages else f"apprise: {status}")[:500]
        if status == "nomatch":
            raise PermanentError(f"apprise: no service for the URL ({detail})")
        found = _STATUS.search(detail)
        if found is not None and status == "failure":
            raise_for_status(int(found.group(1)), None, detail)  # 2xx cannot come with it
        raise RetryableError(f"apprise {status}: {detail}")

    def _notify(self, title: str, body: str, kind: str) -> tuple[str, list[str]]:
        """One Apprise call (blocking, in a thread): its status and its warnings."""
        import apprise  # imported by open() already

        service = apprise.Apprise()
        service.add(self._url)
        result: Any = service.notify(
            body=body, title=title, notify_type=kind, timeout=self.config.timeout
        )
        messages = [entry.message for entry in result.logs() if entry.level != "DEBUG"]
        return result.status.name.lower(), messages


def build(config: AppriseTargetConfig, settings: Settings) -> AppriseTarget:
    return AppriseTarget(config, settings)
