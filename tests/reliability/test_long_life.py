"""A hundred jobs one after another: the server's footprint stays flat."""

from __future__ import annotations

import time

import pytest

from tests.helpers.procs import wait_until
from tests.helpers.server_proc import ServerProcess

JOBS = 100
WARM_UP = 10


def steady_fds(server: ServerProcess, readings: int = 3) -> int:
    """The fewest open fds over a few orphan passes, each read once the server has closed
    every client connection. A request that just ended holds its socket until the server
    reads the close (CI read 13 against 12 that way), and a pass may hold a /proc file for
    a moment; a leaked fd is held at every reading, a connection never closed included."""
    counts = []
    for _ in range(readings):
        server.wait_orphan_passes(1)
        wait_until(lambda: not server.client_connections(), timeout=10)
        counts.append(server.num_fds())
    return min(counts)


def footprint(server: ServerProcess) -> dict[str, float]:
    fds = steady_fds(server)
    health = server.health()
    return {
        "rss_mb": round(server.rss_mb(), 2),
        "fds": fds,
        "tasks": health["tasks"],
        "children": len(server.descendants()),
        "zombies": len(server.zombies()),
    }


@pytest.mark.slow
def test_hundred_jobs_in_a_row_keep_the_server_flat(start_server, tone, record):
    server = start_server(fake=["--lines", "20", "--interval", "0"])
    began = time.monotonic()
    samples = {}
    for n in range(1, JOBS + 1):
        job = server.upload(tone, on_disconnect="keep")
        final = server.wait_final(job["id"], timeout=30)
        assert final["status"] == "completed", final
        # Each job's lines all reached its log; its row is complete.
        assert server.log_lines(job["id"], 3)[-1] == "done"
        if n == WARM_UP:
            # A whole monitor pass (metrics, heartbeats, orphans) after the last job, as at the end.
            server.wait_orphan_passes(2)
            samples["warm"] = footprint(server)
    server.wait_orphan_passes(2)
    samples["end"] = footprint(server)
    warm, end = samples["warm"], samples["end"]
    record(jobs=JOBS, seconds=round(time.monotonic() - began, 1), warm=warm, end=end)
    assert end["rss_mb"] - warm["rss_mb"] < 10, samples
    assert end["zombies"] == 0 and end["children"] == 0, samples
    assert end["fds"] <= warm["fds"], samples
    assert end["tasks"] <= warm["tasks"], samples
    statuses = {j["status"] for j in server.jobs()}
    assert statuses == {"completed"}, statuses
