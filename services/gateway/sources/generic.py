"""Source type ``generic``: any sender that signs its JSON body with an HMAC in a header
(Grafana's webhook HMAC, home-grown systems).

The signature is the HMAC (``algorithm`` ``sha256``, ``sha1`` or ``sha512``) keyed with
``secret``, of the raw body, or of ``"<timestamp><timestamp_separator><body>"`` when
``timestamp_header`` names the header carrying the unix seconds (then within
``tolerance`` seconds of now, either way); written in ``header`` as ``encoding`` ``hex``
or ``base64``, after an optional ``prefix`` (``sha256=``). Compared in constant time.

The body is one JSON object, or an array of them, each its own notification: its type is
the text at ``type_field`` (default ``type``; else ``default_type``), its id the text or
number at ``id_field`` (default ``id``; else the hash of the object), and its fields are
read by the generic profile: top-level ``risk``, ``application``, ``environment``,
``description``, ``url``, ``ips``, ``accounts``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

import msgspec

from services.gateway.sources import (
    TOLERANCE,
    Headers,
    Malformed,
    Received,
    Unauthorized,
    any_matches,
    checked_id,
    decodes,
    digest_id,
    header,
    load_json,
    mac,
    raw_body,
    text,
    timestamp,
)
from shared.bus.messages import utc_now
from shared.core.secrets import Secret
from shared.core.settings import Settings
from shared.relay.inbound import SourceConfig
from shared.relay.schemas import Notification, subject_token

HeaderName = Annotated[str, msgspec.Meta(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")]
FieldName = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class GenericSourceConfig(SourceConfig, frozen=True, kw_only=True, tag="generic"):
    """``secret`` (or ``secret_file``) and how the sender writes its HMAC."""

    secrets: ClassVar[tuple[str, ...]] = ("secret",)
    required_secrets: ClassVar[tuple[str, ...]] = ("secret",)

    secret: str | None = None
    secret_file: str | None = None
    header: HeaderName = "X-Signature"
    algorithm: Literal["sha256", "sha1", "sha512"] = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = ""
    timestamp_header: HeaderName | None = None
    timestamp_separator: str = "."
    tolerance: Annotated[float, msgspec.Meta(gt=0, le=86400)] = TOLERANCE
    type_field: FieldName = "type"
    id_field: FieldName = "id"
    default_type: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9_-]{1,64}$")] = "alert"


CONFIG = GenericSourceConfig
_raw_list = msgspec.json.Decoder(list[msgspec.Raw])


class GenericReceiver:
    def __init__(self, config: GenericSourceConfig, secret: Secret, max_messages: int) -> None:
        self.config = config
        self.max_messages = max_messages
        self.key = secret.reveal().encode()

    def _verify(self, headers: Headers, body: bytes) -> None:
        config = self.config
        signature = header(headers, config.header)
        if config.prefix:
            if not signature.lower().startswith(config.prefix.lower()):
                raise Unauthorized(f"{config.header} must start with {config.prefix}")
            signature = signature[len(config.prefix) :]
        content = body
        if config.timestamp_header:
            sent = header(headers, config.timestamp_header)
            timestamp(sent, config.timestamp_header, config.tolerance)
            content = f"{sent}{config.timestamp_separator}".encode() + body
        if config.encoding == "hex":
            try:
                given: bytes | None = bytes.fromhex(signature)
            except ValueError:
                given = None
        else:
            given = decodes(signature)
        if given is None:
            raise Unauthorized(f"{config.header} is not {config.encoding}")
        if not any_matches([mac(self.key, content, config.algorithm)], [given]):
            raise Unauthorized("signature does not match")

    def receive(self, headers: Headers, body: bytes) -> Received:
        self._verify(headers, body)
        payload = load_json(body)
        if not isinstance(payload, list):
            return Received([self._notification(0, payload, raw_body(body))])
        if not payload:
            raise Malformed("the array holds no messages")
        if len(payload) > self.max_messages:
            raise Malformed(f"{len(payload)} messages in one request; at most {self.max_messages}")
        raws = _raw_list.decode(body)
        return Received([self._notification(i, item, raws[i]) for i, item in enumerate(payload)])

    def _notification(self, index: int, item: Any, data: msgspec.Raw) -> Notification:
        if not isinstance(item, dict):
            raise Malformed(f"message {index}: must be a JSON object")
        config = self.config
        kind = text(item.get(config.type_field)) or config.default_type
        given = item.get(config.id_field)
        if isinstance(given, int) and not isinstance(given, bool):
            given = str(given)
        ident = (
            checked_id(given, f"message {index}: {config.id_field}")
            if isinstance(given, str) and given
            else digest_id(item)
        )
        return Notification(
            id=ident,
            type=subject_token(kind),
            source=config.name,
            timestamp=text(item.get("timestamp")) or utc_now(),
            data=data,
        )


def build(
    config: GenericSourceConfig, secrets: Mapping[str, Secret], settings: Settings
) -> GenericReceiver:
    return GenericReceiver(config, secrets["secret"], settings.max_messages)
