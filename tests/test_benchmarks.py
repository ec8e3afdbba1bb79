"""Benchmark scripts run at a tiny size, so that none of them rots (no timing is asserted)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.slow
def test_quality_run_prints_a_row_per_bar():
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "quality.py"), "--seeds", "0", "--tiny"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    from importlib.util import module_from_spec, spec_from_file_location

    spec = spec_from_file_location("quality_benchmark", REPO / "benchmarks" / "quality.py")
    quality = module_from_spec(spec)
    sys.modules[spec.name] = quality  # dataclasses look their module up there
    spec.loader.exec_module(quality)
    table = [line for line in result.stdout.splitlines() if line.startswith("| ") and "preset" not in line]
    expected = {(p, bar.metric) for p, bars in quality.QUALITY_BARS.items() for bar in bars}
    assert {tuple(cell.strip() for cell in line.strip("|").split("|")[:2]) for line in table} == expected


def run_benchmark(script: str, *args: str) -> list[str]:
    """The benchmark's Markdown table rows, header left out."""
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return [line for line in result.stdout.splitlines() if line.startswith("| ")][1:]


@pytest.mark.slow
def test_startup_benchmark_times_each_command_against_importing_tensorflow():
    rows = run_benchmark("startup.py", "--rounds", "1")
    assert [row.split("|")[1].strip() for row in rows] == [
        "`import tensorflow`", "`zoo --help`", "`zoo list`", "`zoo info cnn_cat_classifier`",
    ]  # fmt: skip


@pytest.mark.slow
def test_discovery_benchmark_finds_every_generated_plugin():
    # The script itself fails unless `zoo list` shows every generated model.
    rows = run_benchmark("discovery.py", "--counts", "0", "5", "--rounds", "1")
    assert [row.split("|")[1].strip() for row in rows] == ["0", "5"]
