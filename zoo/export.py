"""Exporting a finished run's model for serving: Keras, TensorFlow SavedModel, TFLite.

Each format is written beside the run as ``RUN_DIR/export/<name>`` unless an output path
is given, always through a temporary name, so an interrupted export never leaves a file
or folder that looks complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional

from zoo import artifacts
from zoo.errors import ZooError

FORMATS = ("keras", "saved_model", "tflite")


def default_output(run_dir: Path, fmt: str, quantize: bool) -> Path:
    name = {"keras": "model.keras", "saved_model": "saved_model", "tflite": "model.tflite"}[fmt]
    if quantize:
        name = name.replace("model", "model.quantized", 1)
    return Path(run_dir) / "export" / name


# In an exported folder: the zoo wrote it, so --force may replace it.
MARKER = ".zoo-export"


def check_output(output: Path, run_dir: Path, force: bool) -> None:
    """Never write over what the zoo did not write: an existing output is refused, and
    ``force`` replaces only the zoo's own earlier export (a folder it marked, or a file in
    the run's ``export/``)."""
    if not output.exists() and not output.is_symlink():
        return
    ours = (output / MARKER).is_file() if output.is_dir() and not output.is_symlink() else (
        output.parent.resolve() == (run_dir / "export").resolve() and not output.is_symlink()
    )  # fmt: skip
    if not force:
        hint = "or --force to replace the zoo's earlier export" if ours else "it was not written by the zoo"
        raise ZooError(f"{output} exists; choose another --output ({hint})")
    if not ours:
        raise ZooError(f"{output} exists and was not written by the zoo, so it is left as it is; choose another --output")


def export(run_dir: Path, fmt: str, output: Optional[Path] = None, quantize: bool = False, force: bool = False) -> Path:
    """Export the model of the finished run in ``run_dir`` as ``fmt``; returns the path written.

    Args:
        fmt: ``keras`` (the model saved afresh as a ``.keras`` file), ``saved_model`` (a TensorFlow
            SavedModel folder with a ``serve`` signature) or ``tflite``.
        quantize: TFLite only: dynamic-range quantisation (weights stored as 8-bit
            integers, about 4x smaller, activations still computed in float).
    """
    from zoo.run import import_tensorflow, load_run_config, load_trained_model

    if fmt not in FORMATS:
        raise ZooError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if quantize and fmt != "tflite":
        raise ZooError(f"--quantize applies to --format tflite only, not {fmt}")
    run_dir = Path(run_dir)
    load_run_config(run_dir, [])  # refuses anything but a finished run
    output = Path(output) if output else default_output(run_dir, fmt, quantize)
    if fmt == "keras" and output.suffix != ".keras":
        raise ZooError(f"a Keras model file must end in .keras, got {output}")
    check_output(output, run_dir, force)
    output.parent.mkdir(parents=True, exist_ok=True)

    tf = import_tensorflow()
    # Rebuilt by its plugin with the run's weights, never copied: the file in the run
    # directory may have been replaced by one carrying code.
    _, model = load_trained_model(run_dir)
    if fmt == "keras":
        artifacts.write_atomic(output, lambda tmp: model.save(tmp))
        return output

    staging = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}-"))
    try:
        # Both formats start from a SavedModel (converting from the Keras model would
        # export one anyway, noisily).
        model.export(str(staging / "saved_model"), format="tf_saved_model", verbose=False)
        if fmt == "saved_model":
            (staging / "saved_model" / MARKER).write_text(f"exported by zoo from {run_dir.resolve()}\n", encoding="utf-8")
            _replace_folder(staging / "saved_model", output)
            return output
        converter = tf.lite.TFLiteConverter.from_saved_model(str(staging / "saved_model"))
        if quantize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        flat_buffer = converter.convert()
        artifacts.write_atomic(output, lambda tmp: tmp.write_bytes(flat_buffer))
        return output
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _replace_folder(new: Path, target: Path) -> None:
    """Move ``new`` to ``target``, replacing an older export (the zoo's: ``check_output``)
    only once the new one is complete."""
    if not target.exists():
        os.replace(new, target)
        return
    old = target.with_name(f".{target.name}-old")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)
