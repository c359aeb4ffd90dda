"""A real pipeline resumed mid-file: SIGKILL the server halfway through a job, start it
again on the same data directory, and the job completes from where it was, every segment
once, in order, and the words as good as a whole run's.

Needs the pipeline's `--resume` (pipeline/resume.py)."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers.waiting import wait_for
from tests.helpers.wer import wer

# Distinct sentences, so a segment transcribed twice or lost shows in the words.
SENTENCES = [
    f"Part {name}. The {fruit} was placed on the {colour} table, and everyone in the room "
    f"agreed that the {fruit} looked better there than anywhere else in the old house. "
    f"Later that evening the {fruit} was taken to the kitchen, where it was cut into small "
    f"pieces and shared between the children, who had waited all afternoon for it."
    for name, fruit, colour in [
        ("one", "apple", "green"), ("two", "banana", "yellow"), ("three", "cherry", "red"),
        ("four", "orange", "blue"), ("five", "lemon", "white"), ("six", "mango", "brown"),
        ("seven", "peach", "black"), ("eight", "plum", "purple"), ("nine", "pear", "grey"),
        ("ten", "grape", "pink"), ("eleven", "melon", "gold"), ("twelve", "lime", "silver"),
    ]
]  # fmt: skip


def spoken(tmp_path: Path) -> Path:
    """The sentences in two voices, one after another, as one WAV (espeak-ng and sox):
    about three minutes, so the job is still working when the server is killed."""
    parts = []
    for i, sentence in enumerate(SENTENCES):
        part = tmp_path / f"part-{i}.wav"
        voice = "en-us" if i % 2 else "en-gb"
        subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(part), sentence], check=True)
        parts.append(str(part))
    out = tmp_path / "speech.wav"
    subprocess.run(["sox", *parts, "-r", "16000", "-c", "1", str(out)], check=True)
    return out


@pytest.mark.slow
def test_a_real_pipeline_resumes_mid_file_after_a_server_sigkill(start_server, tmp_path, record):
    assert shutil.which("espeak-ng") and shutil.which("sox")
    audio = spoken(tmp_path)
    server = start_server("--max-concurrent-jobs", "1")
    job = server.upload(audio, on_disconnect="keep")
    def a_third_done() -> bool:
        row = server.job(job["id"])
        assert row["status"] in ("queued", "running"), row  # the file is long enough
        checkpoint = row.get("output_path") and Path(row["output_path"]) / "transcript.partial.json"
        return row["progress"] >= 0.3 and bool(checkpoint) and checkpoint.exists()

    wait_for(a_third_done, 300, "the job to be 30% done and its partial transcript written")
    server.sigkill()
    began = time.monotonic()
    server.start()
    final = server.wait_final(job["id"], timeout=300)
    took = time.monotonic() - began
    assert final["status"] == "completed", final

    log = Path(final["log_file_path"]).read_text().splitlines()
    assert sum(line.startswith("[transcriptor] resumed at ") for line in log) == 1, log
    [kept] = [line for line in log if line.startswith("resumed at ") and "kept" in line]
    assert " kept 0 " not in kept, kept  # it went on, it did not start over
    transcript = json.loads((Path(final["output_path"]) / "transcript.json").read_text())
    segments = transcript["segments"]
    starts = [s["start"] for s in segments]
    assert starts == sorted(starts) and len(set(starts)) == len(starts), starts
    for before, after in itertools.pairwise(segments):
        assert after["start"] >= before["end"] - 0.05, (before, after)  # none twice, none overlapping
    api = server.get_json(f"/api/jobs/{job['id']}/segments")["segments"]
    assert [s["text"] for s in api] == [s["text"].strip() for s in segments]
    # The words as good as a whole run's (the bound: WER within 0.01).
    whole = server.wait_final(server.upload(audio, on_disconnect="keep")["id"], timeout=300)
    assert whole["status"] == "completed", whole
    whole_text = json.loads((Path(whole["output_path"]) / "transcript.json").read_text())["text"]
    reference = " ".join(SENTENCES)
    resumed_wer, whole_wer = wer(reference, transcript["text"]), wer(reference, whole_text)
    assert resumed_wer <= whole_wer + 0.01, (resumed_wer, whole_wer, transcript["text"])
    record(
        resumed=kept,
        restart_to_completed_seconds=round(took, 1),
        wer_resumed=round(resumed_wer, 3),
        wer_whole=round(whole_wer, 3),
    )
