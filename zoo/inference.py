"""Using a finished run's model: ``predict`` on a user's files, ``generate`` new examples.

Inputs are read by the core the same way for every dataset: image files (or folders of
them) are decoded with Pillow, converted to the run's channels, resized to its input
size and scaled to [0, 1]; CSV files give one example per row of numbers. The run's
dataset plugin may then ``prepare`` them as it prepared its own data (standardising
features with the training split's statistics, say).
"""

from __future__ import annotations

import csv
import inspect
import itertools
import math
import os
import re
from pathlib import Path
from typing import Any, Iterator, Optional

from zoo import artifacts
from zoo.errors import InputWarning, ZooError
from zoo.hookspecs import CLASSIFICATION, LANGUAGE_MODELING, RECONSTRUCTION
from zoo.tables import shorten

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".jfif", ".jpe", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def user_files(folder: Path) -> list[Path]:
    """The entries below ``folder`` that are not folders, sorted, without hidden ones: what a
    Mac's zip leaves (``__MACOSX/``, ``._photo.jpg``, ``.DS_Store``) and Jupyter's
    ``.ipynb_checkpoints/`` are not the user's data. A link whose target is gone, a pipe or a
    device is among them, for its reader to name (``not_a_file``) rather than skip unsaid.

    A folder below that cannot be listed (another user's, on a shared machine) is one line:
    pathlib's ``rglob`` passed over it, and its images were left out of training and
    predictions without a word (the folder itself, unreadable, was called empty)."""

    def refuse(exc: OSError) -> None:
        raise artifacts.cannot_read(Path(exc.filename or folder), exc)

    found = []
    for root, folders, names in artifacts.walk(folder, onerror=refuse):  # links to folders are listed, not followed
        folders[:] = [name for name in folders if not hidden(name)]
        found += [Path(root, name) for name in names if not hidden(name)]
    return sorted(found)


def hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def not_a_file(path: Path) -> str | None:
    """Why ``path`` cannot be read as a file (opening a pipe would wait for a writer for ever)."""
    if path.is_symlink() and not path.exists():
        return f"a link to {os.readlink(path)}, which does not exist"
    return None if path.is_file() else "not a regular file (a pipe, a socket or a device)"


def image_paths(inputs: list[str]) -> list[tuple[Path, bool]]:
    """The image files that ``inputs`` name, each with whether the user named it (a file
    found in a folder is skipped when it does not decode; a named one is an error)."""
    paths = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = [p for p in user_files(path) if p.suffix.lower() in IMAGE_SUFFIXES]
            if not found:
                raise ZooError(f"{path} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
            paths += [(p, False) for p in found]
        elif path.is_file():
            paths.append((path, True))
        elif path.exists():
            raise ZooError(f"{path} is not a regular file (a pipe, a socket or a device); give image files or folders")
        else:
            raise ZooError(f"{path}: no such file or folder")
    return paths


def read_images(paths: list[tuple[Path, bool]], shape: tuple[int, ...]):
    """``(names, array)`` of the images that decode, resized to ``shape``, values 0 to 1."""
    import warnings

    import numpy as np
    from PIL import Image, UnidentifiedImageError

    height, width, channels = shape
    names, images = [], []
    for path, named in paths:
        problem = not_a_file(path)  # named ones were checked already
        if problem:
            warnings.warn(f"skipped {path}: {problem}", InputWarning, stacklevel=2)
            continue
        try:
            with warnings.catch_warnings():
                # Pillow only warns below twice its pixel limit, then decodes: a bomb is refused outright.
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as image:
                    image = eight_bits(image).convert("L" if channels == 1 else "RGB")
                    image = image.resize((width, height), Image.Resampling.BILINEAR)
                    images.append(np.asarray(image, dtype=np.float32).reshape(height, width, channels) / 255.0)
                    names.append(str(path))
        except PermissionError as exc:  # there, and maybe an image, but another user's
            if named:
                raise artifacts.cannot_read(path, exc) from None
            warnings.warn(f"skipped {path}: {artifacts.why_unreadable(exc)}", InputWarning, stacklevel=2)
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            if named:
                raise ZooError(f"{path} is not an image Pillow can read ({exc}); pass image files or folders of them") from None
            warnings.warn(f"skipped {path}: not an image Pillow can read ({exc})", InputWarning, stacklevel=2)
    return names, np.stack(images) if images else np.zeros((0, height, width, channels), np.float32)


def eight_bits(image):
    """A 16-bit image as 8 bits the way TensorFlow's decoders make them (the high byte), as
    the image folder dataset trained on them: Pillow's own conversion clips at 255 and
    would show the model a white picture."""
    import numpy as np
    from PIL import Image

    if image.mode.startswith("I"):  # I;16, I;16B, and I (a 16-bit PNG as older Pillow opens it)
        return Image.fromarray((np.clip(np.asarray(image), 0, 65535).astype(np.uint32) >> 8).astype(np.uint8))
    if image.mode == "F":
        raise ValueError("its pixels are floating-point numbers of no known range; save it with 8 or 16 bits")
    return image


FLOAT32_MAX = 3.4028234663852886e38  # the model's inputs are float32: a larger value becomes Inf
CSV_CHUNK = 4096  # rows read and predicted at a time: a file of millions of rows never sits in memory at once


def csv_chunks(inputs: list[str], width: int, features: tuple[str, ...] = ()) -> Iterator[tuple[list[str], Any]]:
    """Rows of ``width`` numbers from CSV files, ``CSV_CHUNK`` at a time as ``(names,
    rows)``. A first row that is not numeric is a header; where the dataset names its
    ``features``, the header's names put the columns in the model's order (a file saved with
    its columns in another order is read right), and a header naming others is refused."""
    import numpy as np

    names, rows, read = [], [], 0
    for item in inputs:
        first = True  # the first row with anything in it may be a header
        path = Path(item)
        if item == "-" or (path.exists() and not path.is_file() and not path.is_dir()):  # `... | zoo predict RUN -`
            raise ZooError(
                f"{path} is not a regular file (the standard input, a pipe or a device), which zoo predict does not read "
                "(it could wait on it for ever); save the rows to a file (... > rows.csv) and pass that"
            )
        if not path.exists():
            raise ZooError(f"{path}: no such file")
        if path.suffix.lower() != ".csv" or not path.is_file():
            raise ZooError(f"{path}: this model takes rows of {width} numbers; pass CSV files")
        order = None  # the file's column of each feature, from its header
        try:
            with open(path, newline="", encoding="utf-8-sig") as file:  # -sig: a byte-order mark is not part of a name
                for line_number, row in enumerate(csv.reader(file), start=1):
                    if not row or all(not cell.strip() for cell in row):
                        continue
                    try:
                        values = [csv_number(cell) for cell in row]
                    except ValueError:
                        # A header: the first row with anything in it (after blank lines too), none of it
                        # numbers (a first row of data with one bad cell had been dropped as a header, unsaid).
                        if first and not any(_is_number(cell) for cell in row):
                            first = False
                            order = column_order(path, [cell.strip() for cell in row], features)
                            continue  # a header
                        raise ZooError(f"{path}:{line_number}: {not_a_number(row)}; each row needs {width} numbers") from None
                    first = False
                    if len(values) != width:
                        raise ZooError(f"{path}:{line_number} has {len(values)} values; the model takes {width} per row")
                    if order is not None:
                        values = [values[i] for i in order]
                    # NaN, Inf, or beyond float32: the model would still name a class, with confidence.
                    if not all(math.isfinite(value) and abs(value) <= FLOAT32_MAX for value in values):
                        raise ZooError(f"{path}:{line_number} has a value that is not a finite number (NaN, Inf or too large); fix or drop the row")
                    names.append(f"{path}:{line_number}")
                    rows.append(values)
                    if len(rows) == CSV_CHUNK:
                        read += len(rows)
                        yield names, np.asarray(rows, dtype=np.float32)
                        names, rows = [], []
        except UnicodeDecodeError:
            raise ZooError(f"{path} is not UTF-8 text; save it as UTF-8 CSV") from None
        except PermissionError as exc:
            raise artifacts.cannot_read(path, exc) from None
        except csv.Error as exc:
            raise ZooError(f"{path}: not a readable CSV ({exc})") from None
    if not rows and not read:
        raise ZooError(f"no rows of numbers in {', '.join(inputs)}")
    if rows:
        yield names, np.asarray(rows, dtype=np.float32)


def not_a_number(row: list[str]) -> str:
    """Which cell of a CSV row is not a number, and why when a common cause shows."""
    column, cell = next((i, cell) for i, cell in enumerate(row) if not _is_number(cell))
    said = f"column {column + 1} ({shorten(repr(cell), 40)}) is not a number"
    if not cell.strip():
        return said + " (an empty cell)"
    if ";" in cell or "\t" in cell:
        return said + " (the zoo reads comma-separated values: save the file with commas between values)"
    if re.fullmatch(r"\s*[-+]?\d+,\d+\s*", cell):
        return said + " (a decimal comma: write decimals with a point)"
    return said


def csv_number(cell: str) -> float:
    """A CSV cell's number as spreadsheets and CSV readers write and read it: Python's own
    ``float`` would also take ``1_000`` (1000) and digits of other scripts, quietly."""
    if "_" in cell or not cell.isascii():
        raise ValueError(cell)
    return float(cell)


def _is_number(cell: str) -> bool:
    try:
        csv_number(cell)
    except ValueError:
        return False
    return True


def column_order(path: Path, header: list[str], features: tuple[str, ...]) -> Optional[list[int]]:
    """Where each of ``features`` is among a CSV header's names (None: the dataset names no
    features, or the header is not one of names: columns are taken in order)."""
    if not features or len(header) != len(features) or not set(header) & set(features):
        return None
    if len(set(header)) != len(header):
        twice = sorted({name for name in header if header.count(name) > 1})
        raise ZooError(f"{path}: its header names {shorten(', '.join(twice), 80)} more than once; each column once")
    unknown, missing = [n for n in header if n not in features], [n for n in features if n not in header]
    if unknown or missing:
        raise ZooError(
            f"{path}: its header names {shorten(', '.join(unknown), 80)}, which the model was not trained on, and lacks "
            f"{shorten(', '.join(missing), 80)}; name the columns as the run's spec.json lists its feature_names, or drop the header"
        )
    return [header.index(name) for name in features]


IMAGE_CHUNK = 256  # images read and predicted at a time: a folder of 100,000 photos never sits in memory at once


def input_chunks(plan, inputs: list[str]) -> Iterator[tuple[list[str], Any]]:
    """``(names, examples)`` from image files and folders, or CSV files, prepared by the
    run's dataset as it prepared its own data, a chunk of images at a time. No TF."""
    import numpy as np

    spec = plan.spec
    if not inputs:
        raise ZooError("give at least one input: image files, folders of images, or CSV files")
    if len(spec.input_shape) not in (1, 3):
        raise ZooError(f"the zoo reads images and CSV rows; this run's inputs have shape {spec.input_shape}")
    if len(spec.input_shape) == 3:
        paths = image_paths(inputs)
        chunks = (read_images(paths[start : start + IMAGE_CHUNK], spec.input_shape) for start in range(0, len(paths), IMAGE_CHUNK))
    else:
        chunks = csv_chunks(inputs, spec.input_shape[0], tuple(spec.feature_names))
    read = 0
    for names, x in chunks:
        if not names:
            continue
        read += len(names)
        if plan.dataset.item.prepare is not None:
            x = np.asarray(plan.dataset.item.prepare(plan.dataset_config, plan.seed, x), dtype=np.float32)
        yield names, x
    if not read:
        raise ZooError(f"no readable images in {', '.join(inputs)}")


def read_inputs(plan, inputs: list[str]):
    """All of ``inputs`` as one ``(names, examples)``."""
    import numpy as np

    chunks = list(input_chunks(plan, inputs))
    return [name for names, _ in chunks for name in names], np.concatenate([x for _, x in chunks])


def predict(run_dir: Path, inputs: list[str]) -> tuple[list[str], Iterator[list[str]]]:
    """Predictions of a finished run's model on ``inputs``: a header, and one row per example
    as the inputs are read, a chunk at a time (the inputs' first mistakes, and the run's, are
    found before this returns; a later row's when the rows get there)."""
    import numpy as np

    from zoo.run import finished_run_plan, load_trained_model

    plan = finished_run_plan(run_dir)  # validate before TensorFlow loads
    objective = plan.model.item.objective
    if objective not in (CLASSIFICATION, RECONSTRUCTION):
        raise ZooError(f"model {plan.model.name!r} makes new examples rather than predicting; use: zoo generate {run_dir}")
    spec = plan.spec
    chunks = input_chunks(plan, inputs)
    first = next(chunks)  # the inputs' first mistakes are found before TensorFlow loads
    _, model = load_trained_model(run_dir, plan)
    classes = spec.class_names or tuple(str(i) for i in range(spec.num_classes))

    def rows() -> Iterator[list[str]]:
        for names, x in itertools.chain([first], chunks):
            output = np.asarray(model.predict(x, verbose=0, batch_size=64), dtype="float32")  # float32 also from a mixed-precision model
            if objective == RECONSTRUCTION:
                errors = np.square(output - x).reshape(len(x), -1)
                yield from ([name, f"{e.sum():.4f}", f"{e.mean():.6f}"] for name, e in zip(names, errors))
            elif spec.binary:
                yield from ([name, classes[int(p >= 0.5)], f"{p:.4f}"] for name, p in zip(names, output.reshape(-1)))
            else:
                yield from ([name, classes[k], f"{row[k]:.4f}"] for name, k, row in zip(names, output.argmax(axis=1), output))

    if objective == RECONSTRUCTION:
        return ["input", "reconstruction_error", "mse"], rows()
    return ["input", "predicted", f"p({classes[1]})" if spec.binary else "probability"], rows()


def generate_options(generate) -> dict[str, Any]:
    """The keyword options (with defaults) a plugin's ``generate`` accepts."""
    return {
        name: parameter.default
        for name, parameter in inspect.signature(generate).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }


MAX_SAMPLES = 10_000  # zoo generate's n: more is a batch job, not a command


def generate(run_dir: Path, overrides: list[str], output: Optional[Path] = None) -> tuple[Any, Optional[Path]]:
    """New examples from a finished run's model; ``overrides`` are ``key=value`` options
    (``n``, ``seed`` and the model's own). Images are written to ``output`` (default
    ``RUN_DIR/generated/samples_seed<seed>.png``, or raw arrays to a ``.npy`` path);
    texts are returned, and written where ``output`` says."""
    import numpy as np

    from zoo.run import finished_run_plan, load_trained_model

    run_dir = Path(run_dir)
    plan = finished_run_plan(run_dir)
    generator = plan.model.item.generate
    if generator is None:
        raise ZooError(f"model {plan.model.name!r} does not generate; models that do: {', '.join(_generators())}")
    allowed = {"seed": 0, **generate_options(generator)}
    options = {}
    for override in overrides:
        key, sep, text = override.partition("=")
        if not sep or key not in allowed:
            raise ZooError(f"unknown option {override!r} for {plan.model.name}; give key=value with key one of: {', '.join(allowed)}")
        default = allowed[key]
        if isinstance(default, str):  # prompt=123 is the text "123", any characters as typed
            options[key] = text
            continue
        value = artifacts.command_line_value(override, text)
        if isinstance(default, (int, float)) and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ZooError(f"{key}={text!r} must be a number (default {default})")
        elif isinstance(default, int) and not isinstance(value, int):
            raise ZooError(f"{key}={text!r} must be a whole number (default {default})")
        elif isinstance(value, float) and not math.isfinite(value):
            raise ZooError(f"{key}={text!r} must be a finite number (default {default})")
        options[key] = value
    seed = options.pop("seed", 0)
    texts = plan.model.item.objective == LANGUAGE_MODELING
    suffixes = (".txt",) if texts else (".png", ".npy")
    if output and Path(output).suffix.lower() not in suffixes:  # before TensorFlow loads and the samples are drawn
        raise ZooError(
            f"write texts to a .txt file, not {Path(output).name}" if texts
            else f"write images to a .png (a grid) or a .npy (the arrays), not {Path(output).name}"
        )
    if not 0 <= seed < 2**32:
        raise ZooError(f"seed={seed} must be from 0 to {2**32 - 1}")
    if "n" in options and not 1 <= options["n"] <= MAX_SAMPLES:
        raise ZooError(f"n={options['n']} must be from 1 to {MAX_SAMPLES} samples")  # a huge n fills memory first

    _, model = load_trained_model(run_dir, plan)
    samples = generator(model, plan.model_config, plan.spec, seed=seed, **options)
    title = f"{plan.model.name} on {plan.dataset.name}, seed {seed}"
    if artifacts.is_text(samples):
        if output:
            artifacts.write_samples(Path(output), samples, title)
        return samples, output
    output = Path(output) if output else run_dir / "generated" / f"samples_seed{seed}.png"
    artifacts.refuse_links_on_the_way(run_dir, output, "--output")
    artifacts.check_output_folder(output.parent, "--output")
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix.lower() == ".npy":
        artifacts.write_atomic(output, lambda tmp: tmp.write_bytes(_npy_bytes(np.asarray(samples))))
    else:
        artifacts.write_samples(output, samples, title)
    return samples, output


def _npy_bytes(array) -> bytes:
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _generators() -> list[str]:
    from zoo.registry import get_registry

    return [entry.name for entry in get_registry().list("model") if entry.item.generate is not None]


def count_cost(plan) -> dict[str, int]:
    """Parameters of the plan's model and the floating-point operations of one forward pass
    on one example, counted by TensorFlow's profiler on the traced graph (a multiply-add
    counts 2)."""
    import dataclasses

    from zoo.run import import_tensorflow

    tf = import_tensorflow()
    from tensorflow.python.profiler import model_analyzer, option_builder

    # Counting needs no starting weights: `zoo info pretrained_classifier` had downloaded ImageNet's.
    model = plan.model.item.factory(dataclasses.replace(plan.model_config, **plan.model.item.without_starting_weights), plan.spec)
    dtype = "int32" if plan.spec.task == "sequence" else "float32"
    traced = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec([1, *plan.spec.input_shape], dtype)
    )
    options = option_builder.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    level = tf.get_logger().level
    tf.get_logger().setLevel("ERROR")  # the profiler is TF1 API and says so on every call
    try:
        flops = model_analyzer.profile(traced.graph, options=options).total_float_ops
    finally:
        tf.get_logger().setLevel(level)
    trainable = sum(int(tf.size(w)) for w in model.trainable_weights)
    return {
        "parameters": sum(int(tf.size(w)) for w in model.weights),
        "trainable_parameters": trainable,
        "flops_per_example": int(flops),
    }
