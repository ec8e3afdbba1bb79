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
        "`import tensorflow`", "`zoo --help`", "`zoo list`", "`zoo info cnn_cat_classifier --no-cost`",
    ]  # fmt: skip


@pytest.mark.slow
def test_discovery_benchmark_finds_every_generated_plugin():
    # The script itself fails unless `zoo list` shows every generated model.
    rows = run_benchmark("discovery.py", "--counts", "0", "5", "--rounds", "1")
    assert [row.split("|")[1].strip() for row in rows] == ["0", "5"]


@pytest.mark.slow
def test_overhead_benchmark_runs_both_sides_with_the_same_execution_choices():
    rows = run_benchmark("overhead.py", "--jobs", "cat_cnn", "--images", "64", "--epochs", "2", "--rounds", "1")
    assert [row.split("|")[1].strip() for row in rows] == ["plain Keras", "zoo train"]
    assert len({row.split("|")[4].strip() for row in rows}) == 1  # jit_compile, steps_per_execution


@pytest.mark.slow
def test_overhead_benchmark_times_the_default_job_against_both_hand_written_scripts():
    rows = run_benchmark("overhead.py", "--jobs", "default", "--epochs", "1", "--rounds", "1")
    assert [row.split("|")[1].strip() for row in rows] == ["plain Keras, accuracy", "plain Keras, five metrics", "zoo train"]
    assert all(float(row.split("|")[2]) > 0 for row in rows)
    assert [row.split("|")[4].strip() for row in rows[:2]] == ["<= 1.15", "<= 1.05"]


@pytest.mark.slow
def test_input_pipeline_benchmark_times_the_seed_and_the_zoo():
    rows = run_benchmark("input_pipeline.py", "--images", "64", "--epochs", "2", "--steps", "1", "--rounds", "1")
    assert [row.split("|")[1].strip().split(":")[0] for row in rows] == ["seed 004", "zoo"]


@pytest.mark.slow
def test_memory_benchmark_watches_a_file_cached_run_and_the_in_memory_control():
    rows = run_benchmark("memory.py", "--cap-mb", "8000", "--factor", "0.002", "--image-size", "64", "--epochs", "3")
    assert len(rows) == 2 and rows[0].startswith("| file") and "memory" in rows[1]
    assert rows[0].split("|")[3].strip() == "yes"  # far under a generous cap
    assert len(rows[0].split("|")[2].split("/")) == 3  # a peak per epoch


@pytest.mark.slow
def test_gpu_benchmark_runs_its_measurements_on_a_cpu_when_asked():
    # Smaller images (the smallest the cat CNN takes is about 64): float16 on a CPU is
    # emulated, and at 150x150 a few steps took over 10 minutes here.
    rows = run_benchmark("gpu.py", "--images", "32", "--epochs", "2", "--steps", "1", "--cpu", "--size", "64")
    assert len(rows) == 4 and all(float(row.split("|")[2]) > 0 for row in rows)


@pytest.mark.slow
def test_compression_benchmark_prints_its_three_tables():
    rows = run_benchmark("compression.py", "--tiny", "--seeds", "0")
    # pruning: a seed and the mean; distillation: the same; quantisation: four kinds
    assert len([r for r in rows if not r.startswith("|---")]) >= 2 + 1 + 2 + 1 + 4


@pytest.mark.slow
def test_explain_benchmark_measures_every_method(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "explain.py"), "--tiny", "--pictures", str(tmp_path)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    shares = [line for line in result.stdout.splitlines() if line.startswith("| ") and "|---" not in line]
    assert {line.split("|")[1].strip() for line in shares} >= {"gradcam", "integrated_gradients", "saliency", "occlusion"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "explained_breast_cancer.integrated_gradients.png", "explained_cat.occlusion.png"
    ]  # fmt: skip


@pytest.mark.slow
def test_metrics_benchmark_times_the_zoo_metrics_against_keras_own():
    rows = run_benchmark("metrics.py", "--classes", "2", "12")
    cells = [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]
    assert [(c[0], c[1]) for c in cells] == [
        (classes, name) for classes in ("2", "12")
        for name in ("zoo f1", "zoo auc", "Keras F1Score(average='macro')", "Keras AUC(multi_label=True)")
    ]  # fmt: skip


@pytest.mark.slow
def test_long_runs_benchmark_times_the_first_and_last_epochs():
    (row,) = run_benchmark("long_runs.py", "--epochs", "400")
    wall, early, late, ratio = (float(cell) for cell in row.strip("|").split("|"))
    assert wall > 0 and early > 0 and late > 0 and ratio == pytest.approx(late / early, abs=0.01)
