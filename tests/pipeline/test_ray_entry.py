"""The Ray node's side without a cluster: its line splitting and its protocol lines."""

from __future__ import annotations

from pipeline.protocol import NodeMetrics, format_metrics, format_result, parse_metrics, parse_result
from pipeline.ray_entry import split_output
from server.executors.ray import LineSplitter


def test_split_output_makes_the_lines_a_local_job_would():
    assert split_output(b"plain\n") == ["plain"]
    assert split_output(b"crlf\r\n") == ["crlf"]
    assert split_output(b"p 1/3\rp 2/3\rp 3/3\rdone\n") == ["p 1/3", "p 2/3", "p 3/3", "done"]
    assert split_output(b"no end") == ["no end"]
    assert split_output(b"\xff\n") == ["\ufffd"]
    assert split_output(b"x" * 10 + b"\n", max_bytes=4) == ["xxxx", "xxxx", "xx"]
    # A cut never lands inside a UTF-8 character.
    assert split_output("aé".encode() * 3 + b"\n", max_bytes=4) == ["aéa", "éa", "é"]


def test_metrics_and_result_lines_round_trip():
    # Memory crosses as a whole number of bytes: the server gets the node's figure exactly.
    line = format_metrics(NodeMetrics(12.34, 59_539_373, 3))
    assert parse_metrics(line) == NodeMetrics(12.3, 59_539_373, 3)
    assert parse_metrics("[metrics] cpu=x") is None and parse_metrics("line") is None
    files = {"transcript.txt": "héllo\n".encode(), "transcript.json": b"{}"}
    line = format_result(files)
    assert "\n" not in line and parse_result(line) == files
    assert parse_result("[result] not base64!") is None


def test_ray_chunks_split_into_whole_lines():
    splitter = LineSplitter()
    assert splitter.feed("a\nb") == ["a"]
    assert splitter.feed("c\r\n\n") == ["bc", ""]
    assert splitter.feed("tail") == []
    assert splitter.rest() == ["tail"] and splitter.rest() == []
