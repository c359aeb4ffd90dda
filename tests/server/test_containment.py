"""Which containment the app uses is stated in /api/health and on the home page."""

from __future__ import annotations

from server.app import create_app
from tests.helpers.cgroups import require_cgroups


async def test_cgroups_are_said_to_be_in_use(aiohttp_client, make_config):
    require_cgroups().close()
    client = await aiohttp_client(create_app(make_config()))
    assert (await (await client.get("/api/health")).json())["containment"] == "cgroup"
    assert "its own cgroup" in await (await client.get("/")).text()


async def test_the_fallback_is_said_plainly(aiohttp_client, make_config, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    client = await aiohttp_client(create_app(make_config(cgroup_root=plain)))
    assert (await (await client.get("/api/health")).json())["containment"] == "process-group"
    assert "own process group (no cgroups here)" in await (await client.get("/")).text()
