"""The live pipeline mode: its audio front end, its turn taking and agreement policy, and the
real program fed through its socket."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from pipeline.live_audio import FRAME, RATE, Resampler, TurnDetection
from pipeline.live_decode import LocalAgreement
from pipeline.live_session import MAX_UTTERANCE_SECONDS, LiveSession
from tests.helpers.speech import pcm_of, speak

REPO = Path(__file__).resolve().parents[2]


def tone_pcm(seconds: float, hz: float = 440.0, level: float = 0.3, rate: int = 24000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (level * 32767 * np.sin(2 * math.pi * hz * t)).astype("<i2").tobytes()


def test_agreement_sends_only_what_two_decodes_agree_on_and_never_takes_it_back():
    policy = LocalAgreement()
    assert policy.update("And so") == ""  # nothing to agree with yet
    assert policy.update("And so my") == "And so"
    assert policy.update("And so my fellow.") == " my"
    assert policy.update("And so my fellow Americans") == " fellow"  # punctuation aside
    assert policy.update("Hence so my fellow Americans ask") == ""  # disagrees: nothing taken back
    assert policy.update("Hence so my fellow Americans ask not") == " Americans ask"
    assert policy.text == "And so my fellow Americans ask"


def test_resampling_in_pieces_matches_one_piece_and_keeps_the_tone():
    pcm = tone_pcm(1.0)
    whole = Resampler()(pcm)
    pieces = Resampler()
    parts = np.concatenate([pieces(pcm[i : i + 962]) for i in range(0, len(pcm), 962)])
    assert len(whole) == len(parts) == RATE
    assert np.allclose(whole, parts, atol=1e-5)
    spectrum = np.abs(np.fft.rfft(whole[1000:]))
    assert abs(np.argmax(spectrum) * RATE / len(whole[1000:]) - 440) < 2
    assert abs(np.sqrt(np.mean(whole[1000:] ** 2)) - 0.3 / math.sqrt(2)) < 0.01


def run_session(
    chunks: list[np.ndarray],
    turns: TurnDetection | str | None = "server_vad",
    calls: list[tuple[int, bool]] | None = None,
    **actions: Any,
) -> list[dict[str, Any]]:
    """Feed 16 kHz audio through a session whose decoder reads one word per 0.25 s;
    `calls` gets (samples, final) of each decode."""
    events: list[dict[str, Any]] = []
    session = LiveSession(events.append, TurnDetection() if turns == "server_vad" else turns)  # type: ignore[arg-type]

    def decode(samples: np.ndarray, final: bool) -> str:
        if calls is not None:
            calls.append((len(samples), final))
        words = " ".join(f"w{i}" for i in range(int(len(samples) / RATE * 4)))
        return words + (" final" if final else "")

    thread = threading.Thread(target=session.decode_loop, args=(decode,))
    thread.start()
    for chunk in chunks:
        session.feed(chunk)
    for name in actions.get("then", ()):
        getattr(session, name)()
    session.close()
    thread.join(timeout=10)
    return events


def noise(seconds: float, level: float) -> np.ndarray:
    return (np.random.default_rng(1).standard_normal(int(seconds * RATE)) * level).astype(np.float32)


def test_speech_between_silences_is_one_utterance_with_its_events():
    events = run_session([noise(1.0, 0.0005), noise(2.0, 0.1), noise(1.0, 0.0005)])
    kinds = [e["event"] for e in events]
    assert kinds[0] == "speech_started" and kinds[-1] == "completed"
    assert kinds.index("speech_stopped") < kinds.index("committed") < kinds.index("completed")
    assert abs(events[0]["audio_start_ms"] - 700) <= 100  # 300 ms of prefix before 1.0 s
    stopped = next(e for e in events if e["event"] == "speech_stopped")
    assert 2500 <= stopped["audio_end_ms"] <= 3700
    assert events[-1]["transcript"].endswith("final") and events[-1]["item"] == 1


def test_the_final_text_is_decoded_ahead_in_the_pause_and_redone_if_speech_goes_on():
    events: list[dict[str, Any]] = []
    calls: list[tuple[int, bool]] = []
    decoded = threading.Semaphore(0)

    def decode(samples: np.ndarray, final: bool) -> str:
        calls.append((len(samples), final))
        decoded.release()
        return f"{len(samples)} final" if final else "partial"

    session = LiveSession(events.append, TurnDetection())
    for chunk in (noise(0.5, 0.0005), noise(2.0, 0.1), noise(0.3, 0.0005)):
        session.feed(chunk)
    thread = threading.Thread(target=session.decode_loop, args=(decode,))
    thread.start()
    assert decoded.acquire(timeout=10)
    assert calls == [(calls[0][0], True)]  # in the pause: the final decode, ahead
    session.feed(noise(1.0, 0.0005))  # the gate closes: nothing said since, so no decode
    session.feed(noise(1.0, 0.1))  # the next utterance
    session.feed(noise(0.3, 0.0005))
    session.feed(noise(0.05, 0.1))  # a voice again after the pause: its ahead goes stale
    session.feed(noise(1.0, 0.0005))
    session.close()
    thread.join(10)
    completed = [e for e in events if e["event"] == "completed"]
    assert completed[0]["transcript"] == f"{calls[0][0]} final"
    # The second's text read past its late voice (prefix 0.36 s + 1.0 + 0.3 + 0.05 s), so
    # not the ahead decoded in its pause, before that voice.
    second = int(completed[1]["transcript"].split()[0])
    assert (second, True) in calls[1:] and second > 1.68 * RATE


def test_silence_alone_costs_no_decode_and_no_event():
    assert run_session([noise(3.0, 0.0005)]) == []


def test_commit_clear_and_manual_turns():
    empty = run_session([noise(0.5, 0.0005)], then=("commit",))
    assert [e["event"] for e in empty] == ["error"]
    assert empty[0]["code"] == "input_audio_buffer_commit_empty"
    cleared = run_session([noise(0.5, 0.1)], then=("clear",))
    assert [e["event"] for e in cleared if e["event"] != "delta"] == ["speech_started", "cleared"]
    manual = run_session([noise(1.0, 0.0005), noise(1.0, 0.1)], turns=None)
    kinds = [e["event"] for e in manual]
    assert "speech_started" not in kinds and kinds[-2:] == ["committed", "completed"]  # close commits


def test_a_long_utterance_is_cut_into_windows():
    events = run_session([noise(MAX_UTTERANCE_SECONDS * 2 + 1, 0.1)])
    completed = [e for e in events if e["event"] == "completed"]
    assert len(completed) == 3
    assert all(e["seconds"] <= MAX_UTTERANCE_SECONDS + FRAME / RATE for e in completed)


def _pipeline(tmp_path: Path) -> tuple[socket.socket, subprocess.Popen[str], socket.socket]:
    name = f"transcriptor-test-{uuid.uuid4().hex}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind("\0" + name)
    server.listen(1)
    argv = [sys.executable, "-m", "pipeline", "@" + name, "--live", "--out-dir", str(tmp_path / "out")]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=REPO)
    server.settimeout(60)
    connection, _ = server.accept()
    return server, process, connection


def _send(connection: socket.socket, kind: bytes, payload: bytes = b"") -> None:
    connection.sendall(kind + len(payload).to_bytes(4, "big") + payload)


@pytest.mark.slow
def test_the_program_transcribes_its_socket_and_a_silent_session_costs_little(tmp_path: Path):
    speak(tmp_path / "s.wav", ["Please bring the red book to the kitchen table."], pause=0.6)
    speech = pcm_of(tmp_path / "s.wav")
    server, process, connection = _pipeline(tmp_path)
    assert process.stdout is not None
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if '"ready"' in line:
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert ready.wait(60)
    tree = psutil.Process(process.pid)
    before = _cpu(tree)
    began = time.monotonic()
    frame = 2 * 24000 // 25  # 40 ms frames of silence at real-time pace, for 3 s
    for number in range(75):
        _send(connection, b"A", bytes(frame))
        time.sleep(max(0.0, began + (number + 1) * 0.04 - time.monotonic()))
    idle_share = (_cpu(tree) - before) / (time.monotonic() - began)
    _send(connection, b"A", speech)
    connection.shutdown(socket.SHUT_WR)
    assert process.wait(60) == 0
    reader.join(5)
    process.stdout.close()
    connection.close()
    server.close()
    assert idle_share < 0.05, idle_share
    events = [json.loads(line[7:]) for line in lines if line.startswith("[live] ")]
    completed = [e for e in events if e["event"] == "completed"]
    assert len(completed) == 1 and "kitchen" in completed[0]["transcript"].lower()
    assert any(line.startswith("[segment ") for line in lines)
    assert "kitchen" in (tmp_path / "out" / "transcript.txt").read_text().lower()


def _cpu(process: psutil.Process) -> float:
    total = 0.0
    for each in [process, *process.children(recursive=True)]:
        times = each.cpu_times()
        total += times.user + times.system
    return total


def test_a_session_whose_socket_is_gone_ends_at_once_with_one_error_line(tmp_path: Path):
    argv = [
        sys.executable,
        "-m",
        "pipeline",
        f"@gone-{uuid.uuid4().hex}",
        "--live",
        "--out-dir",
        str(tmp_path),
    ]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stdout.strip().startswith("error: the live session's socket @gone-")
