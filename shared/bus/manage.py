"""Stream and KV bucket management, apart from the data plane (as nats.py keeps
``js/manager.py`` apart from ``js/client.py``): create a stream or a bucket, or bring an
existing one's settings (replicas, lifetime, direct gets) up to date, idempotently."""

from __future__ import annotations

import dataclasses

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, RePublish, StreamConfig
from nats.js.errors import APIError, BadRequestError, NotFoundError

from shared.core import logging as log
from shared.core.errors import ConfigError

DAY = 86400.0
KV_STREAM = "KV_{bucket}"  # the stream behind a KV bucket (nats-py's naming)
_NON_CLUSTERED = 10074  # JetStream error code: "replicas > 1 not supported in non-clustered mode"

_log = log.get("bus")


async def ensure_stream(js: JetStreamContext, config: StreamConfig, replicas: int) -> None:
    """Create the stream with ``replicas``, or update an existing one to ``config``, its
    replica count included (JetStream scales a stream's replicas up or down in place on a
    cluster)."""
    config = dataclasses.replace(config, num_replicas=replicas)
    try:
        try:
            await js.add_stream(config)
        except BadRequestError:
            # Exists with other settings (e.g. a changed dedup window): update in place.
            assert config.name is not None
            current = (await js.stream_info(config.name)).config.num_replicas
            if current != config.num_replicas:
                _log.info(
                    "changing stream replicas",
                    stream=config.name,
                    replicas=config.num_replicas,
                    was=current,
                )
            await js.update_stream(config)
    except APIError as exc:
        raise_if_not_clustered(exc, config.name)
        raise


def raise_if_not_clustered(exc: APIError, stream: str | None) -> None:
    if exc.err_code == _NON_CLUSTERED:
        raise ConfigError(
            f"LOOKOUT_STREAM_REPLICAS: stream {stream}: {exc.description}; "
            "set LOOKOUT_STREAM_REPLICAS=1 for a single nats-server"
        ) from exc


def _republish(config: RePublish | None) -> tuple[str, str, bool] | None:
    return (
        None if config is None else (config.src or "", config.dest or "", bool(config.headers_only))
    )


async def ensure_bucket(js: JetStreamContext, config: KeyValueConfig, replicas: int) -> None:
    """Create the bucket with ``replicas``, or bring an existing one to ``replicas``,
    ``config.ttl``, when ``config.direct``, ``allow_direct``, and ``config.republish``.
    nats-py has no KV update, and creating it again with other settings fails, so those
    are changed on the bucket's backing stream (its other settings are left as they are):
    a release that changes a lifetime (e.g. the web UI sessions') applies it to buckets
    made by the one before, buckets made before reads went through direct gets
    (shared.bus.direct) can be read so, and ``lookup_results`` made before its RePublish
    gets it."""
    config = dataclasses.replace(config, replicas=replicas)
    stream = KV_STREAM.format(bucket=config.bucket)
    try:
        try:
            info = await js.stream_info(stream)
        except NotFoundError:
            await js.create_key_value(config)
            return
        current = info.config
        wanted_age = float(config.ttl or 0.0)  # 0: keys never expire
        changed: dict[str, object] = {}
        if current.num_replicas != config.replicas:
            changed["replicas"] = (current.num_replicas, config.replicas)
            current.num_replicas = config.replicas
        if abs(float(current.max_age or 0.0) - wanted_age) > 0.001:
            changed["ttl"] = (current.max_age, wanted_age)
            current.max_age = wanted_age
        if config.direct and not current.allow_direct:
            changed["allow_direct"] = (False, True)
            current.allow_direct = True
        if config.republish is not None and _republish(current.republish) != _republish(
            config.republish
        ):
            changed["republish"] = (_republish(current.republish), _republish(config.republish))
            current.republish = config.republish
        if changed:
            _log.info("changing bucket settings", bucket=config.bucket, **changed)
            await js.update_stream(current)
    except APIError as exc:
        raise_if_not_clustered(exc, stream)
        raise
