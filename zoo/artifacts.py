"""Writing a run directory's files: atomically, so no reader sees half a file."""

from __future__ import annotations

import csv
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

# What a finished run directory holds (metrics.json is written last: its presence means
# the run completed).
CONFIG = "config.yaml"
HISTORY = "history.csv"
MODEL = "model.keras"
METRICS = "metrics.json"
CURVES = "plots/training_curves.png"
TENSORBOARD = "tensorboard"


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=path.suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_history(path: Path, history: Mapping[str, Sequence[float]]) -> None:
    """One row per epoch: ``epoch`` then each logged value, training before validation."""
    columns = sorted(k for k in history if not k.startswith("val_")) + sorted(k for k in history if k.startswith("val_"))
    epochs = len(next(iter(history.values()), []))

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["epoch", *columns])
            for epoch in range(epochs):
                writer.writerow([epoch + 1, *(repr(float(history[c][epoch])) for c in columns)])

    write_atomic(path, write)


def plot_training_curves(path: Path, history: Mapping[str, Sequence[float]], title: str) -> None:
    """Loss and each metric per epoch, training against validation, one panel each."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    names = [k for k in history if not k.startswith("val_")]
    names.sort(key=lambda n: (n != "loss", n))
    columns = min(3, len(names))
    rows = -(-len(names) // columns)
    fig = Figure(figsize=(4.5 * columns, 3.4 * rows), layout="constrained")
    fig.suptitle(title)
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, columns, i + 1)
        epochs = range(1, len(history[name]) + 1)
        ax.plot(epochs, history[name], marker="o", markersize=3, label="training")
        if f"val_{name}" in history:
            ax.plot(epochs, history[f"val_{name}"], marker="o", markersize=3, label="validation")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
