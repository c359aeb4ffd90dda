"""The pipeline command line the runner builds is one the real pipeline accepts."""

from __future__ import annotations

from pathlib import Path

from pipeline.args import build_parser
from server.config import Config
from server.jobs.argv import pipeline_argv
from server.store import Store
from tests.helpers.legacy_db import make_legacy_db


def parsed(config: Config, job: dict, out_dir: Path):
    argv = pipeline_argv(config, job, out_dir)
    assert argv[-1] == "--lifeline"
    return build_parser().parse_args(argv[3:])  # after `python -m pipeline`


async def test_queued_row_from_an_older_install_runs_with_pipeline_defaults(tmp_path: Path) -> None:
    db = tmp_path / "transcriptor.db"
    make_legacy_db(db)
    store = await Store.open(db)
    try:
        (job,) = await store.queued_jobs()
    finally:
        await store.close()
    assert job["language"] is None and job["chunk_seconds"] is None  # the old table had neither
    args = parsed(Config(data_dir=tmp_path), job, tmp_path / "out")
    assert str(args.input) == job["original_path"]
    assert args.model == "base" and args.threads == job["threads"] == 2


async def test_new_job_passes_every_option(tmp_path: Path) -> None:
    job = {
        "original_path": "/x/a.wav", "model": "tiny.en", "language": "en", "processes": 2,
        "threads": 1, "chunk_seconds": 30.0, "overlap_seconds": 2.0,
    }  # fmt: skip
    args = parsed(Config(data_dir=tmp_path), job, tmp_path / "out")
    assert (args.language, args.processes, args.chunk_seconds, args.overlap_seconds) == ("en", 2, 30.0, 2.0)
    assert args.lifeline


def test_extra_options_become_flags() -> None:
    from server.jobs.argv import option_flags

    encoded = '{"initial_prompt": "Fox.", "temperature": 0.2, "word_timestamps": false, "batch_size": 0}'
    assert option_flags(encoded) == [
        "--initial-prompt", "Fox.", "--temperature", "0.2", "--no-word-timestamps", "--batch-size", "0",
    ]  # fmt: skip
    assert option_flags(None) == []


def test_model_downloads_reach_the_pipeline_only_when_allowed(make_config, tmp_path):
    from server.jobs.argv import pipeline_argv

    job = {"original_path": str(tmp_path / "a.wav"), "model": "small"}
    assert "--allow-download" not in pipeline_argv(make_config(), job, tmp_path)
    allowed = pipeline_argv(make_config(allow_model_downloads=True), job, tmp_path)
    assert "--allow-download" in allowed
    # The real pipeline's parser accepts what the server sends.
    from pipeline.args import build_parser

    command_length = len(make_config().pipeline_command)
    assert build_parser().parse_args(allowed[command_length:]).allow_download is True
