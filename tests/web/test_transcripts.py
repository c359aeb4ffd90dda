"""A finished job's transcript through the real app: audio with ranges, edits with
versions and history, exports of the edited text, search, retry and delete."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from server import keys
from server.app import create_app
from tests.helpers.app_api import upload, wait_status

FINAL = {"completed", "failed", "cancelled"}


async def finished_job(client: Any, tone: Path, **fields: Any) -> dict[str, Any]:
    response = await upload(client, tone, **fields)
    assert response.status == 201, await response.text()
    job = await wait_status(client, (await response.json())["id"], FINAL)
    # The aftercare task has read the transcript in once it has settled the ending.
    return job


async def test_audio_is_served_with_ranges(aiohttp_client, make_config, tone):
    client = await aiohttp_client(create_app(make_config()))
    job = await finished_job(client, tone)
    whole = await client.get(f"/api/jobs/{job['id']}/audio")
    assert whole.status == 200
    assert whole.headers["Content-Type"] == "audio/wav"
    assert whole.headers["Accept-Ranges"] == "bytes"
    data = await whole.read()
    assert data == tone.read_bytes()
    part = await client.get(f"/api/jobs/{job['id']}/audio", headers={"Range": "bytes=100-199"})
    assert part.status == 206
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    assert await part.read() == data[100:200]
    tail = await client.get(f"/api/jobs/{job['id']}/audio", headers={"Range": "bytes=-10"})
    assert tail.status == 206 and await tail.read() == data[-10:]
    assert (await client.get("/api/jobs/999/audio")).status == 404


async def test_edits_are_versioned_exported_and_kept(aiohttp_client, make_config, tone):
    config = make_config("--segments", "3")
    client = await aiohttp_client(create_app(config))
    job = await finished_job(client, tone)
    base = f"/api/jobs/{job['id']}"
    body = await (await client.get(f"{base}/segments")).json()
    assert body["version"] == 1
    assert [s["id"] for s in body["segments"]] == [0, 1, 2]
    assert body["segments"][1]["words"], "the machine's words are kept"

    edited = await client.patch(f"{base}/segments/1", json={"text": "a corrected line", "version": 1})
    assert edited.status == 200, await edited.text()
    answer = await edited.json()
    assert answer["version"] == 2 and answer["segment"]["text"] == "a corrected line"
    assert answer["segment"]["edited"] is True

    # Another tab still at version 1 cannot overwrite it.
    stale = await client.patch(f"{base}/segments/0", json={"text": "other tab", "version": 1})
    assert stale.status == 409
    assert (await stale.json())["version"] == 2

    history = (await (await client.get(f"{base}/transcript/history")).json())["versions"]
    assert [v["version"] for v in history] == [1, 2]
    assert all(v["created_at"] for v in history)

    txt = await (await client.get(f"{base}/transcript.txt")).text()
    assert txt.splitlines() == ["segment 1", "a corrected line", "segment 3"]
    for kind in ("srt", "vtt", "json", "verbose_json"):
        text = await (await client.get(f"{base}/transcript.{kind}")).text()
        assert "a corrected line" in text and "segment 2" not in text, kind
    original = await (await client.get(f"{base}/transcript.txt?version=1")).text()
    assert original.splitlines() == ["segment 1", "segment 2", "segment 3"]
    document = json.loads(await (await client.get(f"{base}/transcript.json?version=1")).text())
    assert document["segments"][1]["text"] == "segment 2"
    assert (await client.get(f"{base}/transcript.txt?version=7")).status == 404

    # Bad edits: a clear 4xx each.
    assert (await client.patch(f"{base}/segments/9", json={"text": "x", "version": 2})).status == 404
    assert (await client.patch(f"{base}/segments/0", json={"text": "", "version": 2})).status == 400
    assert (await client.patch(f"{base}/segments/0", data=b"not json")).status == 400
    await client.close()

    # A new server on the same database: the edit is there, from the database.
    again = await aiohttp_client(create_app(config))
    body = await (await again.get(f"{base}/segments")).json()
    assert body["version"] == 2 and body["segments"][1]["text"] == "a corrected line"


async def test_search_finds_edited_text_and_forgets_deleted_jobs(aiohttp_client, make_config, tone):
    app = create_app(make_config("--segments", "2"))
    client = await aiohttp_client(app)
    first = await finished_job(client, tone)
    second = await finished_job(client, tone)
    base = f"/api/jobs/{first['id']}"
    await settled(app, 2)
    hits = (await (await client.get("/api/search", params={"q": "segment"})).json())["hits"]
    assert {h["job_id"] for h in hits} == {first["id"], second["id"]}
    hit = hits[0]
    assert set(hit) >= {"job_id", "filename", "segment", "start", "end", "snippet"}
    assert "<mark>segment</mark>" in hit["snippet"]

    await client.patch(f"{base}/segments/0", json={"text": "Zebras crossing <b>here</b>", "version": 1})
    found = (await (await client.get("/api/search", params={"q": "zebra*"})).json())["hits"]
    assert [(h["job_id"], h["segment"]) for h in found] == [(first["id"], 0)]
    # The text is escaped; only the match markers are markup.
    assert found[0]["snippet"] == "<mark>Zebras</mark> crossing &lt;b&gt;here&lt;/b&gt;"
    phrase = (await (await client.get("/api/search", params={"q": '"zebras crossing"'})).json())["hits"]
    assert len(phrase) == 1
    old = (await (await client.get("/api/search", params={"q": '"segment 1"'})).json())["hits"]
    assert [h["job_id"] for h in old] == [second["id"]]

    for bad in ('"unclosed', "AND", "nope:word", "(", ""):
        response = await client.get("/api/search", params={"q": bad})
        assert response.status == 400, (bad, await response.text())
        assert (await response.json())["error"]

    assert (await client.delete(base)).status == 200
    left = (await (await client.get("/api/search", params={"q": "segment OR zebras"})).json())["hits"]
    assert {h["job_id"] for h in left} == {second["id"]}


async def settled(app: Any, count: int) -> None:
    """Wait until the aftercare task has settled `count` endings."""
    async with asyncio.timeout(10):
        while app[keys.AFTERCARE].settled < count:
            await asyncio.sleep(0.02)


async def test_delete_removes_everything_and_refuses_a_running_job(aiohttp_client, make_config, tone):
    config = make_config("--lines", "400", "--interval", "0.05")
    client = await aiohttp_client(create_app(config))
    response = await upload(client, tone, on_disconnect="keep")
    running = await wait_status(client, (await response.json())["id"], {"running"})
    refused = await client.delete(f"/api/jobs/{running['id']}")
    assert refused.status == 409
    await client.post(f"/api/jobs/{running['id']}/stop")
    job = await wait_status(client, running["id"], FINAL)
    upload_path, log_path = Path(job["original_path"]), Path(job["log_file_path"])
    out_dir = Path(job["output_path"])
    assert upload_path.is_file() and log_path.is_file()
    deleted = await client.delete(f"/api/jobs/{job['id']}")
    assert deleted.status == 200
    assert not upload_path.exists() and not log_path.exists() and not out_dir.exists()
    for path in ("", "/audio", "/segments"):
        assert (await client.get(f"/api/jobs/{job['id']}{path}")).status == 404
    assert (await client.delete(f"/api/jobs/{job['id']}")).status == 404


async def test_retry_makes_a_new_job_on_the_same_upload(aiohttp_client, make_config, tone):
    config = make_config("--exit-code", "3")
    client = await aiohttp_client(create_app(config))
    failed = await finished_job(client, tone, model="tiny.en", language="en")
    assert failed["status"] == "failed"
    response = await client.post(f"/api/jobs/{failed['id']}/retry")
    assert response.status == 201, await response.text()
    retry = await response.json()
    assert retry["id"] != failed["id"] and retry["retry_of"] == failed["id"]
    assert retry["original_path"] == failed["original_path"]
    assert (retry["model"], retry["language"]) == ("tiny.en", "en")
    again = await wait_status(client, retry["id"], FINAL)
    assert again["status"] == "failed"
    assert (await (await client.get(f"/api/jobs/{failed['id']}")).json())["status"] == "failed"
    # Deleting the first keeps the upload its retry still names.
    assert (await client.delete(f"/api/jobs/{failed['id']}")).status == 200
    assert Path(retry["original_path"]).is_file()
    assert (await client.get(f"/api/jobs/{retry['id']}/audio")).status == 200
    assert (await client.delete(f"/api/jobs/{retry['id']}")).status == 200
    assert not Path(retry["original_path"]).exists()


async def test_only_failed_or_cancelled_jobs_are_retried(aiohttp_client, make_config, tone):
    client = await aiohttp_client(create_app(make_config()))
    done = await finished_job(client, tone)
    assert done["status"] == "completed"
    assert (await client.post(f"/api/jobs/{done['id']}/retry")).status == 409
    assert (await client.post("/api/jobs/999/retry")).status == 404
