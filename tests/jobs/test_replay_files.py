"""What the server reads of a job's files when it resumes one: how many of the segments
already printed the pipeline keeps (its partial transcript's resume point)."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.protocol import format_segment
from server.jobs.replay import kept_for_resume, logged_segments


def test_a_resume_point_keeps_its_count_not_the_segments_finished_out_of_order(tmp_path: Path):
    segments = [{"start": float(i), "end": i + 1.0, "text": f"s{i}"} for i in range(5)]
    partial = tmp_path / "transcript.partial.json"
    # The real pipeline's shape: 3 released before the point, 2 later ones finished early.
    partial.write_text(json.dumps({"segments": segments, "resume": {"at": 3.0, "segments": 3}}))
    assert kept_for_resume(tmp_path) == 3
    # A partial without a resume point (a stop's, or the fake pipeline's): all of it.
    partial.write_text(json.dumps({"segments": segments}))
    assert kept_for_resume(tmp_path) == 5
    partial.write_text("{not json")
    assert kept_for_resume(tmp_path) == 0
    partial.unlink()
    assert kept_for_resume(tmp_path) == 0


def test_logged_segments_are_numbered_as_their_lines_streamed():
    lines = ["loading", format_segment(0.0, 1.5, "a"), "x", format_segment(1.5, 2.0, "b")]
    found = logged_segments(lines)
    assert [(s["seq"], s["start"], s["text"]) for s in found] == [(2, 0.0, "a"), (4, 1.5, "b")]
