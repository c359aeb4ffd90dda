"""The Dictate button: Chromium's fake microphone plays espeak-ng speech into the page,
which streams it to /v1/realtime; the real live pipeline transcribes it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, sync_api
from tests.helpers.procs import alive_in_group
from tests.helpers.speech import speak
from tests.helpers.waiting import wait_for

expect = sync_api.expect
pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def microphone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the fake microphone says, over and over (Chromium loops the file)."""
    path = tmp_path_factory.mktemp("mic") / "speech.wav"
    speak(path, ["Please bring the red book to the kitchen table."], pause=1.5)
    return path


@pytest.fixture(scope="module")
def mic_browser(microphone: Path) -> Iterator[Any]:
    fake_mic = [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone}",
        "--autoplay-policy=no-user-gesture-required",
    ]
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=[*CHROMIUM_ARGS, *fake_mic]
        )
        yield chromium
        chromium.close()


def start_dictating(page: Any, url: str) -> int:
    page.goto(url + "/")
    page.click("#dictate-button")
    link = page.locator("#dictate-job")
    expect(link).to_be_visible(timeout=30_000)
    return int(str(link.get_attribute("href")).rsplit("/", 1)[1])


def test_dictated_speech_appears_and_closing_the_page_ends_the_job(
    start_server: Any, mic_browser: Any
) -> None:
    server = start_server()
    context = mic_browser.new_context()
    page = context.new_page()
    job_id = start_dictating(page, server.url)
    job = server.wait_running(job_id, timeout=60)
    assert job["source"] == "live"
    final = page.locator("#dictate-text .utterance.final")
    expect(final.first).to_contain_text("kitchen", ignore_case=True, timeout=60_000)
    expect(page.locator("#dictate-stop")).to_be_visible()
    job_page = context.new_page()  # the session's job page shows the text as it grows
    job_page.goto(f"{server.url}/jobs/{job_id}")
    expect(job_page.locator("#status-badge")).to_have_text("running")
    expect(job_page.locator("#live-pending")).to_be_visible(timeout=30_000)
    expect(job_page.locator("#transcript")).to_contain_text("kitchen", ignore_case=True, timeout=30_000)
    job_page.close()

    page.close()
    began = time.monotonic()
    wait_for(lambda: not alive_in_group(job["process_group_id"]), 5, "the session's processes to end")
    took = time.monotonic() - began
    ended = server.wait_final(job_id, 5)
    assert ended["status"] == "cancelled" and ended["cancel_reason"] == "client disconnected", ended
    assert took < 2.0, took  # 1 s in the goals; the browser's own close adds its part
    again = context.new_page()  # cancelled, yet what it transcribed stays downloadable
    again.goto(f"{server.url}/jobs/{job_id}")
    expect(again.locator("#status-badge")).to_have_text("cancelled")
    expect(again.locator("#download-txt")).to_be_visible()
    assert "kitchen" in server.text(f"/api/jobs/{job_id}/transcript.txt").lower()
    context.close()


def test_stop_completes_the_job_and_keeps_its_transcript(start_server: Any, mic_browser: Any) -> None:
    server = start_server()
    context = mic_browser.new_context()
    page = context.new_page()
    job_id = start_dictating(page, server.url)
    expect(page.locator("#dictate-text .utterance.final").first).to_contain_text(
        "kitchen", ignore_case=True, timeout=60_000
    )
    page.click("#dictate-stop")
    expect(page.locator("#dictate-status")).to_have_text("Stopped.")
    expect(page.locator("#dictate-button")).to_be_enabled()
    ended = server.wait_final(job_id, 10)
    assert ended["status"] == "completed", ended
    page.click("#dictate-job")
    expect(page.locator("#transcript")).to_contain_text("kitchen", ignore_case=True, timeout=10_000)
    assert "kitchen" in server.text(f"/api/jobs/{job_id}/transcript.txt").lower()
    context.close()
