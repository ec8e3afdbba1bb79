"""Every experiment preset in conf/experiment/ trains end to end with a tiny budget."""

from __future__ import annotations

import json

import pytest
import yaml

from conftest import REPO, model_overrides, run_zoo, tiny_overrides

PRESETS = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))
# Presets that start from another's run: trained after it, as the README says to run them.
SECOND_PHASES = {"cats_mlp_adam": "cats_mlp_sgd", "cats_pretrained_finetune": "cats_pretrained_head"}


def preset_choice(preset: str, group: str) -> str | None:
    defaults = yaml.safe_load((REPO / "conf" / "experiment" / f"{preset}.yaml").read_text())["defaults"]
    chosen = [d[f"override /{group}"] for d in defaults if f"override /{group}" in d]
    return chosen[0] if chosen else None


def tiny_preset(preset: str) -> list[str]:
    """The preset's dataset and model at their tiny sizes (no downloads: CI has no network)."""
    dataset = [f"dataset.{k}={v}".replace(" ", "") for k, v in tiny_overrides(preset_choice(preset, "dataset")).items()]
    model = preset_choice(preset, "model")
    return dataset + (model_overrides(model) if model else [])


@pytest.mark.slow
@pytest.mark.parametrize("preset", [p for p in PRESETS if p not in SECOND_PHASES])
def test_preset_trains_with_a_tiny_budget(preset, tmp_path):
    tiny = tiny_preset(preset)
    run_dir = tmp_path / "run"
    result = run_zoo(
        "train", f"+experiment={preset}", "trainer.epochs=1", "trainer.progress=off", *tiny,
        f"hydra.run.dir={run_dir}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics and all(isinstance(v, float) for v in metrics.values())
    assert (run_dir / "model.keras").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("second, first", sorted(SECOND_PHASES.items()))
def test_two_phase_presets_run_one_after_the_other(second, first, tmp_path):
    tiny = tiny_preset(first)
    for preset in (first, second):  # no hydra.run.dir: the presets name their directories
        result = run_zoo("train", f"+experiment={preset}", "trainer.epochs=1", "trainer.progress=off", *tiny, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / "runs" / second / "seed_0" / "training.json").read_text())
    assert record["init_from"]["run"] == str((tmp_path / "runs" / first / "seed_0").resolve())
    assert record["init_from"]["unmatched"] == []
