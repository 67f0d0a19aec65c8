"""KV handles for compare-and-set.

A bucket read with direct gets (``allow_direct``, see :mod:`shared.bus.direct`) is answered
by any replica of its stream, and nats-py's ``KeyValue.get`` then asks one too: on a
cluster, a replica that lags gives a revision that is already old, and every
compare-and-set on it fails until the replica catches up. A writer that reads to write
asks the stream's leader instead (``STREAM.MSG.GET``), which has every acknowledged
write."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from shared.bus.manage import KV_STREAM


async def leader_bucket(js: JetStreamContext, bucket: str) -> KeyValue:
    """``bucket`` (which must exist) read from its stream's leader."""
    found = await js.key_value(bucket)  # BucketNotFoundError when it does not exist
    if not found._direct:
        return found
    return KeyValue(
        name=bucket,
        stream=KV_STREAM.format(bucket=bucket),
        pre=f"$KV.{bucket}.",
        js=js,
        direct=False,
    )
