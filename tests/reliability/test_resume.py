"""Resume after a restart: a job the server's going away interrupted (SIGTERM or SIGKILL)
is taken up again by the next server on the same data directory, its pipeline going on
where its partial transcript ends, with every segment once, in order.

The fake pipeline keeps transcript.partial.json current after every line (`--partial`)
and honours `--resume` as the real one does: it goes on after the lines the partial
transcript holds, saying where in a `resuming at line N` line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.server_proc import ServerProcess
from tests.helpers.waiting import wait_for

LINES, SEGMENTS = 60, 30  # a segment every second line
FAKE = ("--lines", str(LINES), "--segments", str(SEGMENTS), "--interval", "0.1", "--partial")


def lines_so_far(server: ServerProcess, job_id: int) -> int:
    """The number N of the last `line N of ...` the job has printed."""
    numbers = [
        int(line.split()[1]) for line in server.log_lines(job_id, 20) if line.startswith("line ")
    ]
    return max(numbers, default=0)


def interrupt(server: ServerProcess, how: str) -> None:
    if how == "sigkill":
        server.sigkill()
    else:
        server.stop()  # SIGTERM; asserts nothing of the server outlives it


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_an_interrupted_job_resumes_where_it_was_with_each_segment_once(start_server, tone, how):
    server = start_server(fake=FAKE)
    audio = tone
    job = server.upload(audio, on_disconnect="keep")
    stopped = server.upload(audio, on_disconnect="keep")
    server.wait_running(stopped["id"])
    assert server.stop_job(stopped["id"]).json()["status"] == "cancelled"
    wait_for(lambda: lines_so_far(server, job["id"]) >= 20, 30, "the job to be a third of the way")
    interrupt(server, how)

    server.start()
    final = server.wait_final(job["id"], timeout=60)
    assert final["status"] == "completed", final
    # A job a person stopped stays stopped.
    assert server.job(stopped["id"])["cancel_reason"] == "stopped by user"

    log = Path(final["log_file_path"]).read_text().splitlines()
    restarts = [line for line in log if line.endswith("after a server restart")]
    assert len(restarts) == 1 and restarts[0].startswith("[transcriptor] resumed at "), restarts
    [resuming] = [line for line in log if line.startswith("resuming at line ")]
    assert int(resuming.split()[3]) > 20, resuming  # it did not start over
    out_dir = Path(final["output_path"])
    assert "--resume" in json.loads((out_dir / "argv.json").read_text())
    expected = [f"segment {n}" for n in range(1, SEGMENTS + 1)]
    transcript = json.loads((out_dir / "transcript.json").read_text())
    assert [s["text"] for s in transcript["segments"]] == expected
    segments = server.get_json(f"/api/jobs/{job['id']}/segments")["segments"]
    assert [s["text"] for s in segments] == expected


def test_a_resumed_job_that_cancels_on_disconnect_gets_the_grace_then_is_cancelled(start_server, tone):
    server = start_server(fake=FAKE)
    job = server.upload(tone, on_disconnect="cancel")
    wait_for(lambda: lines_so_far(server, job["id"]) >= 5, 30, "the job to run")
    server.sigkill()

    server.start()  # --disconnect-grace 1: no page subscribes
    final = server.wait_final(job["id"], timeout=30)
    assert final["status"] == "cancelled", final
    assert final["cancel_reason"] == "all clients disconnected"


def test_without_resume_interrupted_a_shutdown_cancels_and_a_crash_orphans(start_server, tone):
    server = start_server("--no-resume-interrupted", fake=FAKE)
    audio = tone
    first = server.upload(audio, on_disconnect="keep")
    wait_for(lambda: lines_so_far(server, first["id"]) >= 5, 30, "the job to run")
    server.stop()
    server.start()
    row: dict[str, Any] = server.job(first["id"])
    assert (row["status"], row["cancel_reason"]) == ("cancelled", "server shutdown"), row

    second = server.upload(audio, on_disconnect="keep")
    wait_for(lambda: lines_so_far(server, second["id"]) >= 5, 30, "the job to run")
    server.sigkill()
    server.start()
    row = server.job(second["id"])
    assert row["status"] == "failed" and row["error_message"].startswith("orphaned:"), row
