"""Several processes logging to one stdout pipe, unbuffered (as ``lookout run``'s services
do with ``PYTHONUNBUFFERED=1``, which the Dockerfile sets): every line comes out whole
(issue 12, item 19: about 0.6 % of the lines came out interleaved and corrupted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

WRITER = textwrap.dedent(
    """
    import logging, sys
    from shared.core import logging as log

    name, count = sys.argv[1], int(sys.argv[2])
    log.setup(name, "info")
    logger = log.get("test")
    library = logging.getLogger("library")
    for i in range(count):
        # sizes up to a little under PIPE_BUF (4096): what one write to a pipe keeps whole
        logger.info("line", writer=name, i=i, pad="x" * (i * 37 % 3500))
        if i % 10 == 0:
            library.warning("library line %s %d", name, i)
    """
)


def test_concurrent_unbuffered_writers_never_split_a_line() -> None:
    writers, count = 6, 3000
    read_end, write_end = os.pipe()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, f"w{n}", str(count)],
            stdout=write_end,
            env=env,
        )
        for n in range(writers)
    ]
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        raw = pipe.read()
    assert all(proc.wait(60) == 0 for proc in procs)
    lines = raw.decode().splitlines()
    broken = []
    seen: dict[str, int] = {}
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            broken.append(line)
            continue
        if event["event"] == "line":
            seen[event["writer"]] = seen.get(event["writer"], 0) + 1
        else:
            assert event["logger"] == "library"
            assert event["service"] == event["event"].split()[2]
    assert broken == [], f"{len(broken)} of {len(lines)} lines broken, e.g. {broken[:2]}"
    assert seen == {f"w{n}": count for n in range(writers)}
    assert len(lines) == writers * (count + count // 10)


LONG_WRITER = textwrap.dedent(
    """
    import sys
    from shared.core import logging as log

    name, count = sys.argv[1], int(sys.argv[2])
    log.setup(name, "info")
    for i in range(count):  # lines far over PIPE_BUF: a notification with all its data
        log.get("test").info("long", writer=name, i=i, pad="y" * (5000 + i * 997 % 60000))
    sys.stdout.write("a last line without its newline")
    """
)


async def test_lookout_run_relays_long_lines_whole() -> None:
    """``lookout run`` relays each service's output through its own stdout in whole lines,
    so lines longer than one atomic pipe write (4 KiB) do not interleave either."""
    import asyncio
    import threading

    from services.supervisor import relay_lines

    writers, count = 4, 150
    read_end, write_end = os.pipe()
    received = bytearray()
    reader = threading.Thread(target=lambda: received.extend(os.fdopen(read_end, "rb").read()))
    reader.start()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            LONG_WRITER,
            f"w{n}",
            str(count),
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        for n in range(writers)
    ]
    await asyncio.gather(*(relay_lines(p.stdout, write_end) for p in procs if p.stdout))
    assert [await p.wait() for p in procs] == [0] * writers
    os.close(write_end)
    reader.join(30)
    lines = received.decode().splitlines()
    assert lines.count("a last line without its newline") == writers
    events = [json.loads(line) for line in lines if line.startswith("{")]
    assert len(events) == writers * count
    assert max(len(line) for line in lines) > 60_000
