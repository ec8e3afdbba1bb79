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
