"""A wheel installed with `pip install --target` serves its pages with no checkout around."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.helpers.audio import REPO
from tests.helpers.procs import wait_until
from tests.helpers.server_proc import free_port

pytestmark = pytest.mark.slow


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read().decode("utf-8", "replace")


def test_wheel_installed_with_target_serves_pages_and_static(tmp_path: Path) -> None:
    wheels, target, empty = tmp_path / "wheels", tmp_path / "target", tmp_path / "empty"
    empty.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(REPO)], check=True, timeout=600)
    wheel = next(wheels.glob("transcriptor-*.whl"))
    # --no-deps: the dependencies come from this environment; our own code must not.
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True)
    env = {**os.environ, "PYTHONPATH": str(target)}

    where = subprocess.run(
        [sys.executable, "-c", "import server, pipeline; print(server.__file__); print(pipeline.__file__)"],
        cwd=empty, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert all(line.startswith(str(target)) for line in where.stdout.split()), where.stdout

    helped = subprocess.run(
        [str(target / "bin" / "transcriptor"), "--help"], cwd=empty, env=env, capture_output=True, text=True
    )
    assert helped.returncode == 0 and "usage: transcriptor" in helped.stdout, helped.stderr

    port = free_port()
    output = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "server", "--port", str(port), "--data-dir", str(empty / "data")],
        cwd=empty, env=env, stdout=output, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            try:
                return _get(base + "/api/health")[0] == 200
            except OSError:
                return False

        assert wait_until(answers, timeout=60), (tmp_path / "server.log").read_text()
        status, page = _get(base + "/")
        assert status == 200 and "transcriptor" in page.lower()
        links = re.findall(r'(?:href|src)="(/static/[^"?]+)', page)
        assert links, page[:500]
        for link in links:
            assert _get(base + link)[0] == 200, link
        assert (empty / "data" / "transcriptor.db").is_file()  # a fresh database from the shipped schema
    finally:
        server.terminate()
        server.wait(timeout=30)
        output.close()
