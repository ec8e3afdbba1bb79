"""Exporting a finished run's model for serving: Keras, TensorFlow SavedModel, TFLite
(float, or quantised: dynamic range, float16, full integer).

Each format is written beside the run as ``RUN_DIR/export/<name>`` unless an output path
is given, always through a temporary name, so an interrupted export never leaves a file
or folder that looks complete. What was written is measured (size, gzip-compressed size,
the share of zero weights; for TFLite, how often it predicts what the Keras model does on
the test split) and recorded in ``RUN_DIR/export/report.json``.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import gzip
import json
import logging
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from zoo import artifacts
from zoo.errors import InputWarning, ZooError
from zoo.tables import shorten

log = logging.getLogger(__name__)

FORMATS = ("keras", "saved_model", "tflite")
# --quantize: dynamic range (8-bit weights, float activations), float16 weights, or full
# integer (8-bit weights and activations, integer input and output: microcontrollers).
QUANTIZE = ("dynamic", "float16", "int8")
REPORT = "report.json"
CALIBRATION_EXAMPLES = 200  # int8: training examples that set the activations' ranges
AGREEMENT_EXAMPLES = 2000  # at most this many test examples are compared


def default_output(run_dir: Path, fmt: str, quantize: Optional[str]) -> Path:
    name = {"keras": "model.keras", "saved_model": "saved_model", "tflite": "model.tflite"}[fmt]
    if quantize:
        label = "quantized" if quantize == "dynamic" else quantize
        name = name.replace("model", f"model.{label}", 1)
    return Path(run_dir) / "export" / name


# In an exported folder: the zoo wrote it, so --force may replace it.
MARKER = ".zoo-export"


def check_output(output: Path, run_dir: Path, force: bool) -> None:
    """Never write over what the zoo did not write: an existing output is refused, and
    ``force`` replaces only the zoo's own earlier export (a folder it marked, or a file in
    the run's ``export/``)."""
    free = not output.exists() and not output.is_symlink()
    artifacts.output_checked(output, free)
    if free:
        return
    ours = (output / MARKER).is_file() if output.is_dir() and not output.is_symlink() else (
        output.parent.resolve() == (run_dir / "export").resolve() and output.is_file() and not output.is_symlink()
    )  # fmt: skip
    # A file exported elsewhere by the zoo (a deploy folder's model.tflite) is not told from
    # the user's own: nothing in a TFLite or Keras file says which program wrote it.
    own = "an export the zoo can tell as its own: a folder it marked, or a file in the run's export/"
    if not force:
        hint = "or --force to replace the zoo's earlier export" if ours else f"--force replaces only {own}"
        raise ZooError(f"{output} exists; choose another --output ({hint})")
    if not ours:
        raise ZooError(f"{output} exists and is not {own}, so it is left as it is; choose another --output")
    if artifacts.sticky_and_not_ours(output):  # found after the export, as "Operation not permitted"
        raise ZooError(f"{output} is another user's, in a folder where only its owner may replace it (sticky, as /tmp); choose another --output")
    written = exported_files(output) if output.is_dir() else None
    if written is not None:  # files put into the export since (notes, a config of yours) are not the zoo's to delete
        now = folder_files(output)
        foreign = sorted(name for name in now if written.get(name) != now[name])
        if foreign:
            named = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise ZooError(f"{output} holds files the zoo's export did not write ({named}); move them out, or choose another --output")


def folder_files(folder: Path) -> dict[str, int]:
    """Every file in an exported folder but the marker, with its size; links to folders
    too. A folder in it that cannot be listed is one line: pathlib's rglob passed over it
    (and over links to folders), so that --force took what was in them for nothing."""

    def refuse(exc: OSError) -> None:
        raise ZooError(f"{folder} holds {exc.filename}, which {artifacts.why_unreadable(exc)}; move it out, or choose another --output")

    found = {}
    for root, folders, names in artifacts.walk(folder, onerror=refuse):
        for name in [*names, *(f for f in folders if os.path.islink(os.path.join(root, f)))]:
            path = Path(root, name)
            if path != folder / MARKER:
                found[path.relative_to(folder).as_posix()] = path.lstat().st_size
    return found


def exported_files(folder: Path) -> Optional[dict[str, int]]:
    """What the zoo wrote into an exported folder, from its marker (None: a marker of an
    older zoo, which listed nothing)."""
    try:
        written = json.loads((folder / MARKER).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return written if isinstance(written, dict) else None


def export(
    run_dir: Path,
    fmt: str,
    output: Optional[Path] = None,
    quantize: Union[str, bool, None] = None,
    force: bool = False,
) -> Path:
    """Export the model of the finished run in ``run_dir`` as ``fmt``; returns the path
    written, and records what it measured of it in ``RUN_DIR/export/report.json``
    (:func:`export_and_measure` also returns that report).

    Args:
        fmt: ``keras`` (the model saved afresh as a ``.keras`` file), ``saved_model`` (a TensorFlow
            SavedModel folder with a ``serve`` signature) or ``tflite``.
        quantize: TFLite only: ``dynamic`` (weights stored as 8-bit integers, about 4x
            smaller, activations computed in float; ``True`` means this), ``float16``
            (weights as 16-bit floats, 2x smaller) or ``int8`` (weights and activations as
            8-bit integers, calibrated on a sample of the training split; the model takes
            and returns int8 tensors, scaled as its input and output details say).
    """
    return export_and_measure(run_dir, fmt, output, quantize, force)[0]


def export_and_measure(
    run_dir: Path, fmt: str, output: Optional[Path] = None, quantize: Union[str, bool, None] = None, force: bool = False
) -> tuple[Path, dict[str, Any]]:
    """:func:`export`, returning the path written and what was measured of it."""
    from zoo.run import finished_run_plan, import_tensorflow, load_splits, load_trained_model, native_output_logged

    quantize = "dynamic" if quantize is True else (quantize or None)
    if fmt not in FORMATS:
        raise ZooError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if quantize and fmt != "tflite":
        raise ZooError(f"--quantize applies to --format tflite only, not {fmt}")
    if quantize and quantize not in QUANTIZE:
        raise ZooError(f"unknown quantisation {quantize!r}; choose one of: {', '.join(QUANTIZE)}")
    run_dir = Path(run_dir)
    plan = finished_run_plan(run_dir)  # refuses anything but a finished run
    output = Path(output) if output else default_output(run_dir, fmt, quantize)
    if fmt == "keras" and output.suffix != ".keras":
        raise ZooError(f"a Keras model file must end in .keras, got {output}")
    if fmt == "keras":
        artifacts.refuse_a_clock_zip_cannot_record()
    artifacts.refuse_links_on_the_way(run_dir, output, "--output")
    check_output(output, run_dir, force)
    artifacts.check_output_folder(output.parent, "--output")
    output.parent.mkdir(parents=True, exist_ok=True)

    tf = import_tensorflow()
    # Rebuilt by its plugin with the run's weights, never copied: the file in the run
    # directory may have been replaced by one carrying code.
    _, trained = load_trained_model(run_dir, plan)
    model, inputs = served_model(trained, plan)
    report: dict[str, Any] = {"format": fmt, "quantize": quantize, "inputs": inputs}
    # Loaded at most once: int8 calibrates on the training split, the check reads the test split.
    loaded = functools.cache(lambda: load_splits(plan))

    def examples(split: str, count: int):
        """The inputs a check or int8's calibration feeds the served model: the split's first
        examples, or a generator's noise (seeded: the same for the same run)."""
        if inputs.get("latent"):
            import numpy as np

            return np.random.default_rng(["train", "test"].index(split)).standard_normal((count, *inputs["shape"])).astype("float32")
        return first_examples(tf, getattr(loaded(), split), count)

    if fmt == "keras":
        artifacts.write_atomic(output, lambda tmp: model.save(tmp))
        report["load_needs"] = modules_a_keras_file_names(output)
        return record_export(run_dir, output, report, model)

    try:
        staging = Path(tempfile.mkdtemp(dir=output.parent, prefix=artifacts.temporary_prefix(output.name)))
    except OSError as exc:  # named by the output, not the temporary folder it would have been
        raise OSError(exc.errno, exc.strerror, str(output)) from exc
    try:
        # Both formats start from a SavedModel (converting from the Keras model would
        # export one anyway, noisily).
        try:
            with name_tensorflow_takes(staging) as staged:
                export_saved_model(model, inputs, plan.spec, f"{staged}/saved_model")
        except tf.errors.OpError as exc:  # TensorFlow's writer failing: a full disk, a file-size limit
            reason = artifacts.out_of_room(write_failure(exc), output.parent)
            raise ZooError(f"could not write the SavedModel beside {output} ({reason}); nothing was exported") from None
        if fmt == "saved_model":
            marker = {"exported_from": str(run_dir.resolve()), "files": folder_files(staging / "saved_model")}
            (staging / "saved_model" / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
            _replace_folder(staging / "saved_model", output, run_dir, force)
            return record_export(run_dir, output, report, model)
        with native_output_logged("TFLite's converter"), name_tensorflow_takes(staging) as staged:
            flat_buffer = convert_to_tflite(tf, f"{staged}/saved_model", quantize, examples, plan.model.name)
        artifacts.write_atomic(output, lambda tmp: tmp.write_bytes(flat_buffer))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    with native_output_logged("TFLite's interpreter"):  # its notice about the CPU delegate
        report.update(tflite_agreement(tf, plan, model, flat_buffer, examples))
    return record_export(run_dir, output, report, model)


def modules_a_keras_file_names(path: Path) -> list[str]:
    """The modules outside Keras whose classes the ``.keras`` file at ``path`` names (the cat
    CNN's augmentation layer, the VAE's model class, a plugin's own layers): plain
    ``keras.saving.load_model`` finds those classes only once their modules are imported, and
    had failed on "Could not locate class 'RandomAffine'" for a user given the file."""
    import zipfile

    modules: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            module = node.get("module")
            if isinstance(module, str) and "class_name" in node and module.split(".")[0] != "keras":
                modules.add(module)
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    with zipfile.ZipFile(path) as archive:
        visit(json.loads(archive.read("config.json")))
    return sorted(modules)


def served_model(model, plan) -> tuple[Any, dict[str, Any]]:
    """What an export serves, and what it takes: the model's call on the run's inputs; for a
    model that generates (a GAN), its generator, noise in and images out. A GAN's call is its
    discriminator's real-or-fake score: its exports had served that, the generator left out."""
    from zoo.hookspecs import GENERATION

    generator, latent_dim = getattr(model, "generator", None), getattr(model, "latent_dim", None)
    if plan.model.item.objective == GENERATION and generator is not None and latent_dim:
        return generator, {"shape": [int(latent_dim)], "value_range": None, "prepared_by": None, "latent": "standard normal"}
    return model, expected_inputs(plan)


@contextlib.contextmanager
def name_tensorflow_takes(folder: Path) -> Iterator[str]:
    """``folder`` by a name TensorFlow's writers and readers take: they encode paths as UTF-8,
    and a folder whose name is not (a Latin-1 machine's, an old archive's: Python keeps the
    bytes as lone surrogates) failed the export on "UnicodeEncodeError: ... surrogates not
    allowed". Such a folder is named by its open descriptor instead; only Linux and the BSDs
    allow such names, and Linux's /proc gives every descriptor one."""
    try:
        str(folder).encode("utf-8")
    except UnicodeEncodeError:
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            yield f"/proc/self/fd/{descriptor}"
        finally:
            os.close(descriptor)
    else:
        yield str(folder)


def export_saved_model(model, inputs: dict[str, Any], spec, folder: str) -> None:
    """``model`` as a TensorFlow SavedModel in ``folder``, its ``serve`` signature the model's
    call on a batch of ``inputs`` (their shape). The signature is given: Keras infers one only
    for a functional model or a subclassed one it has seen called, and a VAE or GAN rebuilt by
    its factory has only been built."""
    import tensorflow as tf

    from zoo.hookspecs import SEQUENCE

    integers = spec.task == SEQUENCE and not inputs.get("latent")
    signature = [tf.TensorSpec((None, *inputs["shape"]), tf.int32 if integers else tf.float32, name="inputs")]
    model.export(folder, format="tf_saved_model", verbose=False, input_signature=signature)


def write_failure(exc: Exception) -> str:
    """The reason in a TensorFlow error about writing a file, in a few words."""
    text = str(exc)
    return next((reason for reason in artifacts.WRITE_FAILURES if reason in text), " ".join(text.split())[:200])


def convert_to_tflite(tf, saved_model: str, quantize: Optional[str], examples, model_name: str) -> bytes:
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
    if quantize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        try:
            sample = examples("train", CALIBRATION_EXAMPLES)  # the same for the same run
        except ZooError as exc:  # a run from another machine, its data moved: the dataset's own line alone named no fix
            raise ZooError(
                f"--quantize int8 calibrates on the run's training examples, which cannot be loaded here ({exc}); put the "
                "data where the run's config.yaml says, or export without int8 (--quantize float16 needs no data)"
            ) from None
        converter.representative_dataset = lambda: ([example[None]] for example in sample)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    try:
        return converter.convert()
    except Exception as exc:  # the converter raises a ConverterError (or worse) per unsupported op
        text = str(exc)
        what = f"model {model_name!r}{f' with --quantize {quantize}' if quantize else ''}"
        # Ops only TensorFlow's own kernels run (TFLite's "Select TF ops"): a GRU's loop over time,
        # a convolution of a shape known only when the model runs.
        select = re.search(r"TF Select ops: ([^\n]+)", text)
        if select or "ERROR_NEEDS_FLEX_OPS" in text or "Select TF ops" in text:
            ops = select.group(1).strip() if select else ", ".join(sorted(set(re.findall(r"'tf\.(\w+)' op", text)))) or "some"
            raise ZooError(
                f"TFLite cannot convert {what}: its graph needs TensorFlow ops that TFLite's own runtime lacks ({shorten(ops, 120)}); "
                "export it with --format saved_model (or keras) instead"
            ) from None
        first = next((line.strip() for line in text.splitlines() if "error" in line.lower()), text.strip())
        hint = "; try --quantize dynamic or float16" if quantize == "int8" else ""
        raise ZooError(f"TFLite cannot convert {what}: {first[:300]}{hint}") from None


def first_examples(tf, split, count: int):
    """The first ``count`` inputs of a split (arrays, or an unbatched ``tf.data.Dataset``) as float32 NumPy."""
    import numpy as np

    if isinstance(split, tf.data.Dataset):
        return np.stack([np.asarray(x, "float32") for x, _ in split.take(count).as_numpy_iterator()])
    return np.asarray(split[0][:count], "float32")


def tflite_agreement(tf, plan, model, flat_buffer: bytes, examples) -> dict[str, Any]:
    """How the TFLite model's predictions on the test split (a generator's: on noise) compare
    with the Keras model's: for classifiers the share of equal predicted classes, for others
    the largest and mean absolute difference of the outputs. Empty (with a warning) when the
    data is not there."""
    import numpy as np

    from zoo.hookspecs import CLASSIFICATION

    try:
        x = examples("test", AGREEMENT_EXAMPLES)
    except ZooError as exc:
        log.warning("the test split could not be loaded to check the export (%s)", exc)
        return {}
    # Called, not predict(): a function traced per exported model would only be used once.
    expected = np.concatenate([np.asarray(model(x[i : i + 256], training=False), "float32") for i in range(0, len(x), 256)])
    served = np.concatenate([run_tflite(tf, flat_buffer, x[i : i + 256]) for i in range(0, len(x), 256)])
    if plan.model.item.objective != CLASSIFICATION:
        difference = np.abs(served.reshape(expected.shape) - expected)
        return {"test_examples": len(x), "max_abs_difference": float(difference.max()), "mean_abs_difference": float(difference.mean())}
    if plan.spec.binary:
        same = (served.reshape(-1) >= 0.5) == (expected.reshape(-1) >= 0.5)
    else:
        same = served.argmax(axis=1) == expected.argmax(axis=1)
    return {"test_examples": len(x), "agreement": float(same.mean())}


def run_tflite(tf, flat_buffer: bytes, x):
    """A TFLite model's float outputs for the batch ``x``, through its input and output
    quantisation where it has one."""
    import numpy as np

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's notice about LiteRT
        interpreter = tf.lite.Interpreter(model_content=flat_buffer)
    (source,) = interpreter.get_input_details()
    target = interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(source["index"], x.shape)
    interpreter.allocate_tensors()
    scale, zero_point = source["quantization"]
    if np.issubdtype(source["dtype"], np.integer) and scale:
        limits = np.iinfo(source["dtype"])
        x = np.clip(np.round(x / scale + zero_point), limits.min, limits.max)
    interpreter.set_tensor(source["index"], np.asarray(x, source["dtype"]))
    interpreter.invoke()
    y = interpreter.get_tensor(target["index"])
    scale, zero_point = target["quantization"]
    if np.issubdtype(target["dtype"], np.integer) and scale:
        y = (y.astype("float32") - zero_point) * scale
    return np.asarray(y, "float32")


def measure(path: Path) -> dict[str, int]:
    """Bytes on disk, and gzip-compressed (what a download or a firmware image costs:
    pruned weights are zeros, which only compression turns into savings)."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    size = sum(p.stat().st_size for p in files)
    compressed = sum(len(gzip.compress(p.read_bytes(), compresslevel=9, mtime=0)) for p in files)
    return {"bytes": size, "gzip_bytes": compressed}


def zero_weight_share(model) -> float:
    """The share of exact zeros among the model's kernel weights (pruning's result)."""
    import numpy as np

    kernels = [np.asarray(v) for v in model.weights if v.name.endswith("kernel")]
    total = sum(k.size for k in kernels)
    return float(sum(int((k == 0).sum()) for k in kernels) / total) if total else 0.0


def expected_inputs(plan) -> dict[str, Any]:
    """What the exported model takes, as the run trained it: examples as its dataset yields
    them. A dataset with a ``prepare`` (breast_cancer standardises raw rows) trained the
    model on prepared inputs: given raw ones it predicts otherwise, quietly (all 569
    tumours malignant, 37% right), so the report says so, as ``zoo export`` does."""
    spec = plan.spec
    return {
        "shape": list(spec.input_shape),
        "value_range": list(spec.value_range) if spec.value_range else None,
        "prepared_by": f"dataset {plan.dataset.name!r}" if plan.dataset.item.prepare is not None else None,
    }


def record_export(run_dir: Path, output: Path, report: dict[str, Any], model) -> tuple[Path, dict[str, Any]]:
    """Measure ``output``, log it, and add it to the run's ``export/report.json``, keyed by
    the output's path (the zoo's own file: never one beside a user's output). A run on a
    read-only disk exports elsewhere all the same, unrecorded."""
    report = {**report, **measure(output), "zero_kernel_weights": round(zero_weight_share(model), 6)}
    log.info("exported %s: %s", output, report)
    path = run_dir / "export" / REPORT
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with artifacts.folder_locked(path.parent):  # exports of one run at once each add their record
            reports = artifacts.read_record(path)  # a damaged one is written afresh
            reports[report_key(run_dir, output)] = report
            artifacts.write_json(path, reports)
        report = {**report, "recorded_in": str(path)}
    except OSError as exc:
        warnings.warn(f"the export is not recorded in {path} ({exc.strerror})", InputWarning, stacklevel=2)
    return output, report


def report_key(run_dir: Path, output: Path) -> str:
    """An export's name in ``report.json``: its file name in the run's ``export/``, else its absolute path."""
    output = Path(output).resolve()
    return output.name if output.parent == (Path(run_dir) / "export").resolve() else str(output)


def read_report(run_dir: Path, output: Path) -> dict[str, Any]:
    """What ``report.json`` says of the export at ``output``."""
    path = Path(run_dir) / "export" / REPORT
    return artifacts.record_part(artifacts.read_record(path), report_key(run_dir, output))


def _replace_folder(new: Path, target: Path, run_dir: Path, force: bool) -> None:
    """Move ``new`` to ``target``, replacing an older export (the zoo's: ``check_output``)
    only once the new one is complete."""
    if not os.path.lexists(target):
        try:
            os.rename(new, target)  # onto nothing (or a folder made empty meanwhile: nothing lost)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                raise artifacts.made_meanwhile(target) from None
            raise
        return
    check_output(target, run_dir, force)  # what is there now: made since the command began, or changed
    old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f"{artifacts.temporary_prefix(target.name)}old-"))  # a new name: nothing of yours
    os.replace(target, old / target.name)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)
