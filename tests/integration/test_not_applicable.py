"""A target made after a notification arrived never gets it (its durable consumer takes
what comes next): the notifications API says ``not_applicable`` for it, not ``pending`` for
ever, and ``?state=pending`` does not list the notification (issue 15)."""

from __future__ import annotations

from pathlib import Path

from helpers import (
    Receiver,
    api,
    http_target,
    make_settings,
    post_webhook,
    running_gateway,
    running_sink,
    sqreen_fixture,
    wait_for,
)

from shared.core.natsserver import NatsServer


async def test_a_target_added_later_is_not_applicable_to_older_notifications(
    nats_server: NatsServer, tmp_path: Path, receiver: Receiver
) -> None:
    first = make_settings(tmp_path, nats_server.url, http_target(receiver.url))
    async with running_gateway(first) as base, running_sink(first, "ops-http"):
        status, answer = await post_webhook(base, sqreen_fixture("v2_test.json"))
        assert status == 200
        (old_id,) = answer["ids"]
        await wait_for(lambda: len(receiver.requests) == 1)

    # The configuration grows a target; the gateway (re)started with it makes its consumer.
    later = http_target(receiver.url, name="added-later")
    second = make_settings(tmp_path, nats_server.url, http_target(receiver.url) + later)
    async with running_gateway(second) as base, running_sink(second, "ops-http"):

        async def old_delivered() -> bool:
            status, note = await api("GET", f"{base}/api/v1/notifications/{old_id}")
            return status == 200 and note["targets"]["ops-http"]["state"] == "delivered"

        await wait_for(old_delivered)
        status, note = await api("GET", f"{base}/api/v1/notifications/{old_id}")
        assert note["targets"]["added-later"] == {"state": "not_applicable", "attempts": 0}
        assert note["state"] == "delivered"

        # a notification arriving now is the new target's to deliver: pending (no sink runs)
        body = sqreen_fixture("v2_security_event.json")
        status, answer = await post_webhook(base, body)
        assert status == 200
        new_ids = set(answer["ids"])

        async def new_recorded() -> bool:
            status, listed = await api("GET", f"{base}/api/v1/notifications?limit=100")
            seen = {n["id"] for n in listed["notifications"]}
            return status == 200 and new_ids <= seen

        await wait_for(new_recorded)
        status, listed = await api("GET", f"{base}/api/v1/notifications?limit=100")
        by_id = {n["id"]: n for n in listed["notifications"]}
        for new_id in new_ids:
            assert by_id[new_id]["targets"]["added-later"]["state"] == "pending"
        assert by_id[old_id]["targets"]["added-later"]["state"] == "not_applicable"

        status, pending = await api("GET", f"{base}/api/v1/notifications?state=pending")
        assert {n["id"] for n in pending["notifications"]} == new_ids  # not the old one
        # its overall state is its delivered target's
        status, listed = await api("GET", f"{base}/api/v1/notifications?state=delivered")
        assert old_id in {n["id"] for n in listed["notifications"]}
