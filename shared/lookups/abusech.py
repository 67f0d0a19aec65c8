"""What providers of abuse.ch's APIs share: one ``Auth-Key`` (``ABUSECH_API_KEY``, one key
for all of them) and answers that are HTTP 200 with a ``query_status`` (``ok``, a "not
found" of the API's own spelling, or a refusal); a refused key is HTTP 401, or
``unknown_auth_key`` / ``user_blacklisted`` in the body."""

from __future__ import annotations

from typing import Any, ClassVar, Generic

from shared.lookups.config import ApiSettings, C
from shared.lookups.provider import HttpProvider, ProviderError, refuse_throttle_or_key, where

KEY_REFUSED = ("unknown_auth_key", "user_blacklisted")


class AbuseChProvider(HttpProvider, Generic[C]):
    label: ClassVar[str]
    """The service's name in errors, as abuse.ch writes it."""
    not_found: ClassVar[tuple[str, ...]] = ("no_results",)
    """The ``query_status`` values that mean "not known"."""

    def __init__(self, own: ApiSettings[C]) -> None:
        self.config = own.config
        super().__init__(self.config.timeout)
        self.key = own.api_key
        self.base = own.url

    def configured(self) -> str | None:
        return None if self.key is not None else "ABUSECH_API_KEY is not set"

    def cache_salt(self) -> str:
        return self.base

    async def query(
        self, url: str, *, form: dict[str, str] | None = None, json: Any = None
    ) -> dict[str, Any] | None:
        """POST ``form`` or ``json`` to ``url``: the answer's body when its ``query_status``
        is ``ok``, None when it is one of :attr:`not_found`; :class:`ProviderError` (or
        ``Throttled``) for anything else, with the upstream named."""
        assert self.key is not None
        status, headers, body = await self.post_json(
            url,
            headers={"Auth-Key": self.key.reveal(), "Accept": "application/json"},
            form=form,
            json=json,
        )
        about = where(url)
        refuse_throttle_or_key(self.label, status, headers, about)
        if status != 200 or not isinstance(body, dict):
            raise ProviderError(
                f"HTTP {status}" if status != 200 else f"not a {self.label} answer", data=about
            )
        query_status = str(body.get("query_status", ""))
        if query_status in self.not_found:
            return None
        if query_status in KEY_REFUSED:
            raise ProviderError(f"API key refused ({query_status})", data=about)
        if query_status != "ok":
            raise ProviderError(
                f"{self.label} refused the query: {query_status or 'no status'}", data=about
            )
        return body
