"""Speakers on the pages: ask for them in the upload form, see the turns tagged and
coloured, rename one, and download the transcript with the name (real server, real
pipeline, real Chromium)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from benchmarks.conversations import build
from tests.browser.conftest import sync_api

expect = sync_api.expect
pytestmark = [pytest.mark.browser, pytest.mark.slow]
JOB_URL = re.compile(r"/jobs/(\d+)$")


def test_speakers_are_asked_for_shown_and_renamed(start_server: Any, page: Any, tmp_path: Path) -> None:
    dialog = build(2, seconds=40.0, seed=7, folder=tmp_path / "dialog")
    server = start_server()
    page.goto(server.url + "/")
    page.set_input_files("#file", dialog.audio)
    page.click("#options summary")  # the options fold out
    page.select_option("#speakers", "auto")
    page.click("#upload-button")
    page.wait_for_url(JOB_URL, timeout=30_000)
    job_id = int(JOB_URL.search(page.url).group(1))  # type: ignore[union-attr]
    expect(page.locator("#status-badge")).to_have_text("completed", timeout=240_000)

    transcript = page.locator("#transcript")
    expect(transcript.locator("li[data-speaker='A']").first).to_be_visible()
    expect(transcript.locator("li[data-speaker='B']").first).to_be_visible()
    first = transcript.locator("li[data-speaker='A'] .speaker").first
    expect(first).to_have_text("A")
    # Each speaker's turns have their own colour.
    colour = "li[data-speaker='{}']"
    a = transcript.locator(colour.format("A")).first.evaluate("e => getComputedStyle(e).borderLeftColor")
    b = transcript.locator(colour.format("B")).first.evaluate("e => getComputedStyle(e).borderLeftColor")
    assert a != b
    expect(page.locator("#speakers-count")).to_have_text("2 speakers found")

    page.fill("#speakers-list input[name='A']", "Maria")
    page.click("#speakers-save")
    expect(page.locator("#speakers-saved")).to_be_visible()
    expect(first).to_have_text("Maria")
    assert server.job(job_id)["speakers"]["names"] == {"A": "Maria"}
    with page.expect_download() as download:
        page.click("#download-txt")
    text = Path(download.value.path()).read_text()
    assert text.startswith("Maria: ") and "\nB: " in text

    page.reload()
    expect(page.locator("#speakers-list input[name='A']")).to_have_value("Maria")
    expect(transcript.locator("li[data-speaker='A'] .speaker").first).to_have_text("Maria")
    page.fill("#speakers-list input[name='A']", "A")  # back to the label
    page.click("#speakers-save")
    expect(first).to_have_text("A")
    assert server.job(job_id)["speakers"]["names"] == {}
