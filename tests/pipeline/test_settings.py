"""How a run's settings fit the machine: the batch size by device."""

from __future__ import annotations

from pathlib import Path

from pipeline.args import build_parser, settings_from
from pipeline.settings import CPU_BATCH_SIZE, DEFAULT_BATCH_SIZE, Settings, fit_to_machine


def _settings(**given: object) -> Settings:
    return Settings(input=Path("in.wav"), out_dir=Path("out"), **given)  # type: ignore[arg-type]


def test_cpu_encodes_a_window_alone_by_default() -> None:
    fitted = fit_to_machine(_settings(), cores=2)
    assert fitted.batch_size == CPU_BATCH_SIZE == 1
    assert fitted.batched and fitted.replicas == 2  # the replicas keep both cores busy


def test_a_gpu_batches_by_default() -> None:
    assert fit_to_machine(_settings(device="cuda"), cores=2).batch_size == DEFAULT_BATCH_SIZE == 8


def test_an_asked_batch_size_is_kept() -> None:
    assert fit_to_machine(_settings(batch_size=4), cores=2).batch_size == 4
    sequential = fit_to_machine(_settings(batch_size=0), cores=2)
    assert sequential.batch_size == 0 and not sequential.batched and sequential.replicas == 1


def test_the_command_line_leaves_the_batch_size_to_the_device() -> None:
    parse = build_parser().parse_args
    assert settings_from(parse(["in.wav", "--out-dir", "o"])).batch_size is None
    assert settings_from(parse(["in.wav", "--out-dir", "o", "--batch-size", "8"])).batch_size == 8
