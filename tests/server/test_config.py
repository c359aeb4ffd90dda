"""Every setting has a flag, an environment variable, and a line in docs/settings.md."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from server.config import Config, build_parser, check, config_from, documented_settings

SETTINGS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "settings.md"


def test_every_setting_is_documented():
    text = SETTINGS_PAGE.read_text()
    for flag, env, _default, _help in documented_settings():
        assert f"`{flag}" in text, f"{flag} is not documented in docs/settings.md"
        assert env in text, f"{env} is not documented in docs/settings.md"


def test_every_mb_setting_says_mib():
    mb = [(flag, text) for flag, _env, _default, text in documented_settings() if flag.endswith("-mb")]
    assert len(mb) >= 4
    for flag, text in mb:
        assert "MiB" in text, f"{flag}'s help does not say its unit is MiB: {text!r}"


def test_flags_then_environment_then_defaults():
    args = build_parser().parse_args(["--port", "9001", "--kill-grace", "2.5"])
    env = {"TRANSCRIPTOR_PORT": "9999", "TRANSCRIPTOR_DISCONNECT_GRACE": "7",
           "TRANSCRIPTOR_PIPELINE_COMMAND": "python3 fake.py --mode x"}
    config = config_from(args, env)
    assert config.port == 9001
    assert config.kill_grace == 2.5
    assert config.disconnect_grace == 7.0
    assert config.pipeline_command == ("python3", "fake.py", "--mode", "x")
    assert config.orphan_timeout == Config().orphan_timeout


def test_bad_environment_value_is_a_clear_error():
    with pytest.raises(SystemExit, match="TRANSCRIPTOR_PORT"):
        config_from(build_parser().parse_args([]), {"TRANSCRIPTOR_PORT": "eighty"})


def test_non_loopback_without_token_gets_one():
    config = check(Config(host="0.0.0.0"))
    assert config.token and len(config.token) >= 24
    assert check(Config()).token is None


def test_nonsense_settings_refused():
    with pytest.raises(SystemExit, match="max-concurrent-jobs"):
        check(Config(max_concurrent_jobs=0))


def test_every_setting_parses_by_its_type():
    from dataclasses import MISSING

    from server.config import parse_bool, settings_table

    for row in settings_table():
        if row.default not in (MISSING, None, ()):
            assert row.parse(str(row.default)) == row.default, row.flag
    assert parse_bool("false") is False and parse_bool("True") is True
    with pytest.raises(argparse.ArgumentTypeError, match="true or false"):
        parse_bool("maybe")


def test_bounds_come_from_the_table():
    with pytest.raises(SystemExit, match="TRANSCRIPTOR_KILL_GRACE"):
        config_from(build_parser().parse_args([]), {"TRANSCRIPTOR_KILL_GRACE": "-1"})
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--max-concurrent-jobs", "0"])


def test_model_downloads_are_off_unless_allowed():
    assert Config().allow_model_downloads is False
    assert config_from(build_parser().parse_args([]), {}).allow_model_downloads is False
    assert config_from(build_parser().parse_args(["--allow-model-downloads"]), {}).allow_model_downloads
    env = {"TRANSCRIPTOR_ALLOW_MODEL_DOWNLOADS": "true"}
    assert config_from(build_parser().parse_args([]), env).allow_model_downloads
    off = build_parser().parse_args(["--no-allow-model-downloads"])
    assert config_from(off, env).allow_model_downloads is False


def test_webhook_url_must_be_http():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--webhook-url", "ftp://example.org/x"])
    with pytest.raises(SystemExit, match="webhook-url"):
        check(Config(webhook_url="example.org/hook"))
    url = "https://example.org/hook"
    assert config_from(build_parser().parse_args(["--webhook-url", url]), {}).webhook_url == url
