"""SIGKILL the server while a warm standby waits: the standby dies by its lifeline, and the
next server neither mistakes it for an orphan nor finds anything left."""

from __future__ import annotations

import pytest

from tests.helpers.procs import alive, proc_key
from tests.helpers.waiting import wait_for

pytestmark = pytest.mark.slow


def test_sigkill_server_with_a_standby_waiting_leaves_no_pipeline(start_server):
    server = start_server("--standby", "1")
    wait_for(lambda: server.health().get("standby", {}).get("ready"), 120, "a ready standby")
    procs = server.descendants()
    assert any("--standby" in " ".join(p.cmdline()) for p in procs), procs
    keys = [proc_key(p) for p in procs]
    assert len(keys) >= 2  # the standby and its loaded worker
    server.sigkill()
    wait_for(lambda: not any(alive(k) for k in keys), 10, "the standby and its worker to die")
    server.start()
    assert server.jobs() == []  # a standby has no row: nothing to settle
    wait_for(lambda: server.health().get("standby", {}).get("ready"), 120, "a new ready standby")
