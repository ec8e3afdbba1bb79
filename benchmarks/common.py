"""What the benchmarks share: the machine line, child processes that report JSON, and
folders of JPEGs to read."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

QUIET_TF = {"TF_CPP_MIN_LOG_LEVEL": "2"}


def machine() -> str:
    """The machine a table was measured on, for the line above it."""
    import importlib.metadata as metadata

    versions = []
    for name in ("tensorflow", "tensorflow-cpu", "keras"):
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(
        [f"{platform.machine()}", f"{os.cpu_count()} cores", f"Python {platform.python_version()}", *versions]
    )


def run_child(script: str, *args: str, env: dict | None = None) -> dict:
    """Run ``script --child ...`` in a fresh process and return the JSON it prints last."""
    result = subprocess.run(
        [sys.executable, script, "--child", *args],
        capture_output=True, text=True, env={**os.environ, **QUIET_TF, **(env or {})},
    )  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(f"{Path(script).name} {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def write_jpegs(root: Path, count: int, size: int, seed: int = 0) -> Path:
    """``count`` photo-like JPEGs (drawn cats and other shapes with sensor-like noise, so that
    they compress as photos do, not as flat drawings) of ``size`` x ``size``, half in
    ``root/cat`` and half in ``root/not_cat``. Returns ``root``."""
    import numpy as np
    from PIL import Image

    from zoo_plugins.cats import draw_scene

    rng = np.random.default_rng(seed)
    for label, name in enumerate(("not_cat", "cat")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(label, count, 2):
            image = draw_scene(rng, size, bool(label)).astype(np.int16) + rng.normal(0, 12, (size, size, 3))
            Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(root / name / f"{i:06d}.jpg", quality=90)
    return root
