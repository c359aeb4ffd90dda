"""The transcript pages in Chromium: the player tied to the words, editing, search."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import sync_api
from tests.helpers.fake import fake_pipeline_args as fake_pipeline
from tests.helpers.server_proc import ServerProcess as Server
from tests.helpers.waiting import wait_for as wait_until

expect = sync_api.expect
pytestmark = pytest.mark.browser

# Three segments, [0, 1), [1, 2) and [2, 3) s, "segment 1".."segment 3", with their words;
# the clip below is longer, so the play head crosses them all.
THREE_SEGMENTS = fake_pipeline("--lines", "5", "--segments", "3", "--interval", "0")


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four seconds or more of real speech, made by espeak-ng and padded by sox."""
    folder = tmp_path_factory.mktemp("speech")
    raw, clip = folder / "raw.wav", folder / "speech.wav"
    text = "The quick brown fox jumps over the lazy dog near the river bank."
    subprocess.run(["espeak-ng", "-w", str(raw), text], check=True, capture_output=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", str(clip), "pad", "0", "2"], check=True)
    return clip


def finished(server: Server, clip: Path) -> dict[str, Any]:
    job = server.upload(clip, on_disconnect="keep")
    done = server.wait_final(job["id"], 30)
    assert done["status"] == "completed", done
    return done


def audio_time(page: Any) -> float:
    return float(page.evaluate("document.getElementById('player').currentTime"))


def open_job(page: Any, server: Server, job_id: int, fragment: str = "") -> None:
    page.goto(f"{server.url}/jobs/{job_id}{fragment}")
    expect(page.locator("#transcript li.segment")).to_have_count(3, timeout=15_000)
    # The audio's metadata is in: seeking works from here.
    page.wait_for_function("document.getElementById('player').readyState >= 1", timeout=15_000)


def test_click_seeks_and_the_highlight_follows_the_play_head(
    start_server: Any, page: Any, speech: Path
) -> None:
    server = start_server(*THREE_SEGMENTS)
    job = finished(server, speech)
    open_job(page, server, job["id"])
    second = page.locator('#transcript li[data-id="1"]')
    expect(second.locator(".word")).to_have_count(2)  # "segment", "2"
    second.locator(".word").first.click()
    expect(second).to_have_attribute("aria-current", "true")
    expect(second.locator('.word[aria-current="true"]')).to_have_count(1)
    assert 1.0 <= audio_time(page) < 2.0
    page.wait_for_function("!document.getElementById('player').paused")
    # Playing on, the play head reaches the third segment and the highlight moves there.
    third = page.locator('#transcript li[data-id="2"]')
    expect(third).to_have_attribute("aria-current", "true", timeout=10_000)
    expect(second).not_to_have_attribute("aria-current", "true")
    assert page.locator("#transcript [aria-current=true].segment").count() == 1

    # Clicking a line's time seeks to the line's start.
    page.locator('#transcript li[data-id="0"] .ts').click()
    expect(page.locator('#transcript li[data-id="0"]')).to_have_attribute("aria-current", "true")


def test_fragment_time_and_keyboard(start_server: Any, page: Any, speech: Path) -> None:
    server = start_server(*THREE_SEGMENTS)
    job = finished(server, speech)
    open_job(page, server, job["id"], "#t=2.5")
    wait_until(lambda: abs(audio_time(page) - 2.5) < 0.05, 10, "the audio to open at 2.5 s")
    expect(page.locator('#transcript li[data-id="2"]')).to_have_attribute("aria-current", "true")
    page.locator("body").press("ArrowLeft")  # 5 s back: the start
    wait_until(lambda: audio_time(page) == 0.0, 5, "ArrowLeft to step back to 0")
    page.locator("body").press(" ")
    page.wait_for_function("!document.getElementById('player').paused")
    page.locator("body").press(" ")
    page.wait_for_function("document.getElementById('player').paused")
    before = audio_time(page)
    page.locator("body").press("ArrowRight")
    wait_until(lambda: audio_time(page) >= min(before + 4.9, 4.0), 5, "ArrowRight to step on")
    # A line's time is a button: the keyboard alone plays from a line.
    page.locator('#transcript li[data-id="1"] .ts').focus()
    page.keyboard.press("Enter")
    expect(page.locator('#transcript li[data-id="1"]')).to_have_attribute("aria-current", "true")


def test_edit_survives_a_reload_and_is_exported(start_server: Any, page: Any, speech: Path) -> None:
    server = start_server(*THREE_SEGMENTS)
    job = finished(server, speech)
    open_job(page, server, job["id"])
    expect(page.locator("#transcript-version")).to_have_text("Version 1 (as transcribed)")
    second = page.locator('#transcript li[data-id="1"]')
    second.locator("button.edit").click()
    text = second.locator(".text")
    expect(text).to_have_attribute("contenteditable", "true")
    page.keyboard.type("the corrected words")  # the old text is selected, so this replaces it
    page.keyboard.press("Enter")
    expect(page.locator("#transcript-version")).to_have_text("Version 2 (1 edit)")
    expect(page.locator('#transcript li[data-id="1"] .text')).to_have_text("the corrected words")

    page.reload()
    expect(page.locator('#transcript li[data-id="1"] .text')).to_have_text("the corrected words")
    expect(page.locator("#transcript-version")).to_have_text("Version 2 (1 edit)")
    with page.expect_download() as download:
        page.click("#download-txt")
    exported = Path(download.value.path()).read_text().splitlines()
    assert exported == ["segment 1", "the corrected words", "segment 3"]
    with page.expect_download() as download:
        page.click("#download-original")
    assert Path(download.value.path()).read_text().splitlines()[1] == "segment 2"

    # A second tab still at version 1 is told, and shown the current text.
    other = page.context.new_page()
    open_job(other, server, job["id"])
    server_version = server.get_json(f"/api/jobs/{job['id']}/segments")["version"]
    assert server_version == 2
    other.evaluate("window.transcriptorJob.player.version = 1")  # as if read before the edit
    other.locator('#transcript li[data-id="0"] button.edit').click()
    other.keyboard.type("from a stale tab")
    other.keyboard.press("Enter")
    expect(other.locator("#action-error")).to_contain_text("changed elsewhere")
    expect(other.locator('#transcript li[data-id="0"] .text')).to_have_text("segment 1")


def test_search_box_links_to_the_moment(start_server: Any, page: Any, speech: Path) -> None:
    server = start_server(*THREE_SEGMENTS)
    first = finished(server, speech)
    finished(server, speech)
    page.goto(server.url + "/")
    page.fill("#search-q", '"segment 3"')
    hits = page.locator("#search-results .search-hit")
    expect(hits).to_have_count(2)
    expect(hits.first.locator("mark")).to_have_text("segment 3")  # the phrase, marked
    href = hits.last.locator("a").get_attribute("href")
    assert href is not None and re.fullmatch(r"/jobs/\d+#t=2\.00", href)

    page.fill("#search-q", '"unclosed')
    expect(page.locator("#search-note")).to_contain_text("cannot read the search query")
    expect(hits).to_have_count(0)
    page.fill("#search-q", "nothinglikethis")
    expect(page.locator("#search-note")).to_have_text("Nothing found.")

    page.fill("#search-q", "segment 3")
    expect(hits).to_have_count(2)
    page.locator(f'#search-results a[href^="/jobs/{first["id"]}#"]').click()
    page.wait_for_url(re.compile(rf"/jobs/{first['id']}#t=2\.00$"))
    third = page.locator('#transcript li[data-id="2"]')
    expect(third).to_have_attribute("aria-current", "true", timeout=15_000)


def test_the_list_follows_the_play_head_until_the_reader_scrolls(
    start_server: Any, page: Any, tmp_path: Path
) -> None:
    clip = tmp_path / "minute.wav"
    tone = ["synth", "60", "sine", "440", "vol", "0.1"]
    subprocess.run(["sox", "-n", "-r", "16000", "-c", "1", str(clip), *tone], check=True)
    server = start_server(*fake_pipeline("--lines", "60", "--segments", "60", "--interval", "0"))
    job = finished(server, clip)
    page.goto(f"{server.url}/jobs/{job['id']}#t=50.5")
    current = page.locator('#transcript li[data-id="50"]')
    expect(current).to_have_attribute("aria-current", "true", timeout=15_000)
    expect(current).to_be_in_viewport()
    # The reader scrolls the list back to the top: playing on must not pull it away.
    page.locator("#transcript").hover()
    page.mouse.wheel(0, -100_000)
    page.wait_for_function("document.getElementById('transcript').scrollTop === 0")
    page.evaluate("document.getElementById('player').play()")
    later = page.locator('#transcript li[data-id="51"]')
    expect(later).to_have_attribute("aria-current", "true", timeout=10_000)
    assert page.evaluate("document.getElementById('transcript').scrollTop") == 0
    # A click on a line means "follow me again".
    page.locator('#transcript li[data-id="1"] .ts').click()
    page.evaluate("document.getElementById('player').currentTime = 40.5")
    expect(page.locator('#transcript li[data-id="40"]')).to_be_in_viewport()


def test_retry_button_starts_a_new_job(start_server: Any, page: Any, speech: Path) -> None:
    server = start_server(*fake_pipeline("--lines", "3", "--exit-code", "4"))
    job = server.upload(speech, on_disconnect="keep")
    assert server.wait_final(job["id"], 30)["status"] == "failed"
    page.goto(f"{server.url}/jobs/{job['id']}")
    retry = page.locator("#retry-button")
    expect(retry).to_be_visible()
    retry.click()
    page.wait_for_url(re.compile(rf"/jobs/(?!{job['id']}$)\d+$"))
    new_id = int(page.url.rsplit("/", 1)[1])
    assert new_id != job["id"] and server.job(new_id)["retry_of"] == job["id"]
    expect(page.locator("#status-badge")).to_have_text("failed", timeout=15_000)
    assert server.job(job["id"])["status"] == "failed"
