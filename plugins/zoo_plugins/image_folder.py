"""``image_folder``: labelled images on disk, one sub-folder per class (seed 004's layout).

Accepted layouts, under ``dataset.path``::

    cat/ not_cat/                         one folder per class: split by the seed
    train/{cat,not_cat}/                  the same, under train/
    train/... validation/... test/...     given splits (a missing one is split from train)

A folder named like a split but holding images (bus/ car/ train/) is a class.

Every file is checked before training by decoding it once with Pillow (several threads):
files that are not images, or that do not decode, are skipped, listed in the run's
``data.json`` and warned about; good images are never dropped. The training pipeline
then decodes and resizes each image with TensorFlow, once: the result is cached as
uint8, in memory or in a cache file.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import math
import os
import sys
import unicodedata
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import zoo
from zoo.artifacts import cannot_read, check_output_folder, lock, this_user, why_unreadable
from zoo.errors import InputWarning, one_line
from zoo.inference import hidden, not_a_file, user_files
from zoo.tables import Progress, printable, shorten
from zoo_plugins.datasets import check_fractions

# The names of the formats tf.io.decode_image reads (JPEG's .jfif and .jpe too, as Windows
# and cameras name them); it tells a format by the file's content, not its name.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".jfif", ".jpe", ".png", ".bmp", ".gif")
# Those formats as Pillow names them (MPO: a camera's JPEG holding several pictures). A TIFF
# or ICO named .png passed Pillow's check and failed the run in its first epoch, said to be
# "an image overwritten with something that is not an image while the run read its dataset".
DECODED_FORMATS = {"JPEG", "MPO", "PNG", "BMP", "GIF"}
# Images in formats TensorFlow does not decode: said to be images, to be converted.
OTHER_IMAGE_SUFFIXES = (".webp", ".tif", ".tiff", ".heic", ".heif", ".avif", ".jxl", ".ico", ".ppm", ".pgm", ".psd")
SPLIT_FOLDERS = {"train": ("train",), "validation": ("validation", "val"), "test": ("test",)}


@dataclass
class ImageFolderConfig:
    path: str = zoo.data_path("Folder of class sub-folders (or of train/, validation/, test/ folders of them).", default="???")
    image_size: list[int] = field(default_factory=lambda: [150, 150], metadata={"help": "Height and width images are resized to."})
    channels: int = field(default=3, metadata={"help": "3 for RGB, 1 for grayscale."})
    validation_fraction: float = field(default=0.15, metadata={"help": "Share of train/ split off for validation when there is no validation/ folder."})
    test_fraction: float = field(default=0.15, metadata={"help": "Share of train/ split off for testing when there is no test/ folder."})
    cache: str = zoo.data_path(
        "Keep decoded images: memory, off, or a file path prefix (for data larger than memory; the files are named after what they hold).",
        default="memory", keywords=("memory", "off"),
    )

    def __post_init__(self) -> None:
        check_fractions(self.validation_fraction, self.test_fraction)
        if len(self.image_size) != 2 or min(self.image_size) < 1:
            raise ValueError(f"image_size must be [height, width], got {self.image_size}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if "://" in self.cache:  # TensorFlow would read and write it through its network file systems
            raise ValueError(f"cache={self.cache} is a URL; the cache is files on this machine: give a path prefix, memory or off")
        expanded = os.path.expanduser(self.cache)
        if self.cache not in ("memory", "off") and printable(expanded) != expanded:
            # TensorFlow's cache, and its reader the zoo checks the files with, encode names as UTF-8
            raise ValueError(f"cache={printable(self.cache)}: TensorFlow takes only file names in UTF-8 text; give a prefix named in UTF-8")
        # The longest name a split's cache has: PREFIX_validation_<16 hex>_0.data-00000-of-00001.tempstate<up to 20 digits>
        longest = len(os.path.basename(self.cache).encode("utf-8", "surrogateescape")) + len("_validation_") + 16 + 52
        if self.cache not in ("memory", "off") and longest > 255:  # "... .lock: File name too long"
            raise ValueError(f"cache={shorten(self.cache, 60)}: its files' names would pass the 255 bytes a file name may have; give a shorter prefix")


def cache_key(paths, labels, config: ImageFolderConfig) -> str:
    """What a cache file holds, in its name: the files (with their sizes and times), their
    order and labels, and the size they were decoded to. TensorFlow reads any cache file
    of the name it is given, so a folder or size changed since would be trained on stale
    images (or fail on their shape)."""
    import hashlib

    digest = hashlib.sha256(f"{config.image_size} {config.channels}".encode())
    for path, label in zip(paths, labels):
        status = os.stat(path)
        name = os.fsdecode(path)  # as the str paths of before: the same key for the same files
        digest.update(f"\n{name} {label} {status.st_size} {status.st_mtime_ns}".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:16]


def split_roots(config: ImageFolderConfig) -> dict[str, Path]:
    """The folders of class folders for each split that has one (``train`` always). A folder
    named like a split (``train/``, ``val/``, ``test/``) is one when it holds class folders;
    of images, it is a class (vehicles: bus, car, train; a trial's control and test): such a
    class had been taken for a split, the run refused on "test has no readable images in its
    class folders". Split folders beside other folders are refused: which is meant is not known."""
    root = Path(config.path).expanduser()
    if not root.is_dir():
        raise zoo.ZooError(f"dataset.path={config.path} is not a folder; give a folder with one sub-folder per class")
    roots = {}
    for split, names in SPLIT_FOLDERS.items():
        for name in names:
            try:
                found = (root / name).is_dir() and bool(class_folders(root / name))
            except OSError as exc:  # a folder this user may not enter: it had been "train: Permission denied"
                raise cannot_read(root, exc) from None
            if found:
                roots[split] = root / name
                break
    if roots:
        splits = {path.name for path in roots.values()}
        others = [name for name in class_folders(root) if name not in splits]
        if others:
            raise zoo.ZooError(
                f"dataset.path={config.path} holds split folders ({', '.join(sorted(f'{name}/' for name in splits))}) and other "
                f"folders beside them ({shorten(', '.join(f'{name}/' for name in others), 80)}): put every class folder under "
                "the split folders, or, if they are all classes, rename the split-named ones"
            )
    roots.setdefault("train", root)
    return roots


def class_folders(root: Path) -> tuple[str, ...]:
    """The names of ``root``'s sub-folders, sorted; hidden ones and a Mac zip's ``__MACOSX``
    are not classes (``user_files`` skips them inside a class too)."""
    try:
        return tuple(sorted(p.name for p in root.iterdir() if p.is_dir() and not hidden(p.name)))
    except OSError as exc:
        raise cannot_read(root, exc) from None


def class_names(config: ImageFolderConfig) -> tuple[str, ...]:
    roots = split_roots(config)
    names = class_folders(roots["train"])
    for name in names:  # a class name goes into spec.json, plots and predictions: text
        if printable(name) != name:
            if sys.getfilesystemencoding().lower().replace("-", "") != "utf8":  # LC_ALL=C with Python's UTF-8 mode off
                raise zoo.ZooError(
                    f"class folder {printable(roots['train'] / name)}: Python reads file names as "
                    f"{sys.getfilesystemencoding()} under this locale; run with PYTHONUTF8=1 (or LC_ALL=C.UTF-8)"
                )
            raise zoo.ZooError(f"class folder {printable(roots['train'] / name)} has a name that is not UTF-8 text; rename it")
    if len(names) < 2:
        raise zoo.ZooError(
            f"{roots['train']} has {len(names)} class folder(s); it needs one sub-folder per class, at least two "
            "(e.g. cat/ and not_cat/)"
        )
    # Caught here, before TensorFlow starts; a folder of unreadable files only when loading.
    empty = [name for name in names if not user_files(roots["train"] / name)]
    if empty:
        raise zoo.ZooError(
            f"class folder {roots['train'] / empty[0]} is empty; add images, or remove the folder to drop the class"
        )
    # One name in two Unicode spellings (é as one character, or as e and an accent, as macOS
    # writes names): two classes whose names look alike, or a split said to lack a class it shows.
    spelt = {}
    for split, root in roots.items():
        for name in class_folders(root):
            other = spelt.setdefault(unicodedata.normalize("NFC", name), (name, root))
            if other[0] != name:
                raise zoo.ZooError(
                    f"class folders {ascii(str(other[1] / other[0]))} and {ascii(str(root / name))} spell one name in two "
                    "ways of writing Unicode (a copy from macOS decomposes accents); rename one as the other is spelt"
                )
    for split, root in roots.items():
        extra = [name for name in class_folders(root) if name not in names and split != "train"]
        if extra:
            raise zoo.ZooError(f"{root} has class folder {extra[0]!r} that {roots['train']} lacks; use the same class names")
    return names


def describe_image_folder(config: ImageFolderConfig) -> zoo.DataSpec:
    names = class_names(config)
    prefix = os.path.expanduser(config.cache)
    if config.cache not in ("memory", "off") and not glob.glob(f"{glob.escape(prefix)}_*.index"):
        # Found before TensorFlow starts, not when loading. A folder of caches written already
        # (a team's, read-only to this user) is read where it holds these images' files.
        check_output_folder(Path(prefix).parent, "dataset.cache")
    return zoo.DataSpec(
        task=zoo.CLASSIFICATION,
        input_shape=(*config.image_size, config.channels),
        num_classes=len(names),
        class_names=names,
        value_range=(0.0, 1.0),
    )


def check_image(path: Path) -> str | None:
    """Why ``path`` cannot be used as an image, or ``None`` when it decodes."""
    from PIL import Image

    convert = "convert it to PNG or JPEG (Pillow, ImageMagick's mogrify)"
    if path.suffix.lower() in OTHER_IMAGE_SUFFIXES:
        return f"a {path.suffix} image, not a format the image folder reads (it reads {', '.join(IMAGE_SUFFIXES)}); {convert}"
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return f"not an image file ({path.suffix or 'no extension'}; reads {', '.join(IMAGE_SUFFIXES)})"
    if problem := not_a_file(path):
        return problem
    try:
        with Image.open(path) as image:
            image.load()  # a full decode: catches truncated and corrupt files, not only bad headers
            found = image.format
    except PermissionError as exc:
        return why_unreadable(exc)
    except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds for broken files
        return f"does not decode as an image ({type(exc).__name__}: {exc})"
    if found not in DECODED_FORMATS:
        return f"holds an image in {found} format (named {path.suffix}), not one the image folder reads; {convert}"
    return None


def content_digest(path: Path | bytes) -> bytes | None:
    """A digest of the file's bytes (copies of one picture have one), or None where it is gone."""
    import hashlib

    content = hashlib.blake2b()
    try:
        with open(path, "rb") as file:
            for block in iter(lambda: file.read(2**20), b""):
                content.update(block)
    except OSError:  # gone since it was checked: the run's reading says so
        return None
    return content.digest()


def checked_image(path: Path) -> tuple[str | None, bytes | None]:
    """Why ``path`` cannot be used as an image (or None), and its digest where it can: read
    while the check has just read it, not in a pass of its own over every file again."""
    problem = check_image(path)
    return problem, None if problem else content_digest(path)


def list_images(root: Path, names: tuple[str, ...]) -> tuple[list[bytes], list[int], list[str], list[bytes | None]]:
    """Good image paths under each class folder, their labels, the skipped files with reasons,
    and the good files' digests."""
    from concurrent.futures import ThreadPoolExecutor

    candidates = [
        (path, label)
        for label, name in enumerate(names)
        if (root / name).is_dir()
        for path in user_files(root / name)
    ]
    with ThreadPoolExecutor() as pool, Progress(f"checking that the images of {printable(root)} decode", len(candidates)) as progress:
        results = []
        for result in pool.map(checked_image, (path for path, _ in candidates)):  # Pillow releases the GIL while decoding
            results.append(result)
            progress.advance()
    paths, labels, skipped, digests = [], [], [], []
    for (path, label), (problem, digest) in zip(candidates, results):
        if problem:
            skipped.append(printable(f"{path}: {problem}"))
        else:
            paths.append(os.fsencode(path))  # bytes: a name that is not UTF-8 is still a file TensorFlow can read
            labels.append(label)
            digests.append(digest)
    return paths, labels, skipped, digests


def load_image_folder(config: ImageFolderConfig, seed: int) -> zoo.Splits:
    import numpy as np
    import tensorflow as tf

    from zoo.config import refuse_beyond_memory

    names = class_names(config)
    roots = split_roots(config)
    found, skipped, contents = {}, [], {}
    for split, root in roots.items():
        paths, labels, bad, digests = list_images(root, names)
        contents.update(zip(paths, digests))
        if not paths:
            raise zoo.ZooError(f"{root} has no readable images in its class folders; add .jpg or .png files")
        empty = [name for label, name in enumerate(names) if label not in labels]
        if empty and split == "train":
            raise zoo.ZooError(
                f"class folder {root / empty[0]} has no readable images; add some, or remove the folder to drop the class"
            )
        if empty and split == "validation":  # the test split's are said by the run, after testing
            warnings.warn(
                InputWarning(
                    f"the validation folder {root} holds no image of class{'es' if len(empty) > 1 else ''} "
                    f"{shorten(', '.join(map(repr, empty)), 80)}: the val_ recall, F1 and AUC count "
                    f"{'them' if len(empty) > 1 else 'it'} as undefined (0, or left out of an average); add some"
                ),
                stacklevel=1,
            )
        found[split] = (np.array(paths), np.array(labels, dtype=np.int32))
        skipped += bad
    made = [split for split in ("validation", "test") if split not in found]
    found = _split_missing(found, config, seed)
    check_split_classes(found, names, made, config)
    # Files come class by class. A random order, fixed before caching, lets a shuffle buffer
    # smaller than the split (large images: trainer.shuffle_memory_mb) still mix the classes.
    order = np.random.default_rng(seed).permutation(len(found["train"][0]))
    found["train"] = tuple(array[order] for array in found["train"])

    height, width = config.image_size
    if config.cache == "memory":  # filled as the first epoch reads: it had the kernel kill the run there, unsaid
        count = sum(len(paths) for paths, _ in found.values())
        refuse_beyond_memory(
            count * height * width * config.channels,
            f"dataset.cache=memory keeping {count:,} images of {height}x{width}x{config.channels} bytes",
            "give dataset.cache=PREFIX (files on a disk with room) or dataset.cache=off (decoded anew each epoch)",
        )
    prefix = None if config.cache in ("memory", "off") else os.path.expanduser(config.cache)
    if prefix is not None:
        try:  # TensorFlow fails on the first batch, naming a lock file, where the folder is missing
            Path(prefix).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise zoo.ZooError(f"dataset.cache={config.cache}: its folder cannot be made ({exc.strerror}); give a prefix in a folder you can write") from None

    def decode(path, label):
        image = tf.io.decode_image(tf.io.read_file(path), channels=config.channels, expand_animations=False, dtype=tf.uint8)
        image = tf.image.resize(image, (height, width), antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8), label

    def pipeline(split):
        paths, labels = found[split]
        data = tf.data.Dataset.from_tensor_slices((paths, labels)).map(decode, num_parallel_calls=tf.data.AUTOTUNE)
        if config.cache == "memory":
            data = data.cache()
        elif config.cache != "off":
            data = written_cache(data, f"{prefix}_{split}_{cache_key(paths, labels, config)}", len(paths))
        return data.map(lambda image, label: (tf.cast(image, tf.float32) / 255.0, label))

    report = {"images": {split: len(found[split][0]) for split in found}, "skipped": skipped, **copies_across_splits(found, contents)}
    return zoo.Splits(
        train=pipeline("train"),
        validation=pipeline("validation"),
        test=pipeline("test"),
        report=report,
        ids={split: [os.fsdecode(path) for path in paths] for split, (paths, _) in found.items()},  # a file is itself under every seed
    )


COPIES_RECORDED = 100  # pairs of copies data.json names, per kind


def copies_across_splits(found, contents: dict[bytes, bytes | None]) -> dict:
    """Images that are byte-for-byte copies of others where it misleads, said and recorded
    (``data.json``): a validation or test image that is a training image (a photo saved in
    two folders, a scraped set with repeats) is scored as unseen, and the test metrics are
    higher than the model's on new pictures; one picture in two class folders is taught
    under both labels. Both had passed unsaid. ``contents``: each path's digest."""
    digests = {split: [contents[path] for path in paths] for split, (paths, _) in found.items()}
    trained: dict[bytes, tuple[bytes, int]] = {}
    twice = []  # one picture, two labels, in training
    for path, label, key in zip(*found["train"], digests["train"]):
        if key is None:
            continue
        first = trained.setdefault(key, (path, int(label)))
        if first[1] != int(label):
            twice.append((first[0], path))
    report = {}
    for split in ("validation", "test"):
        copies = [(path, trained[key][0]) for path, key in zip(found[split][0], digests[split]) if key in trained]
        if copies:
            report[f"{split}_copies_of_training_images"] = [[os.fsdecode(a), os.fsdecode(b)] for a, b in copies[:COPIES_RECORDED]]
            held, example = len(found[split][0]), copies[0]
            warnings.warn(
                InputWarning(
                    f"{len(copies):,} of the {split} split's {held:,} images "
                    f"{'are copies of training images' if len(copies) > 1 else 'is a copy of a training image'} (byte for byte; "
                    f"{printable(os.fsdecode(example[0]))} is {printable(os.fsdecode(example[1]))}): its metrics score them "
                    f"as unseen, above what new pictures would get; remove the copies (data.json lists them)"
                ),
                stacklevel=1,
            )
    if twice:
        report["training_images_in_two_classes"] = [[os.fsdecode(a), os.fsdecode(b)] for a, b in twice[:COPIES_RECORDED]]
        warnings.warn(
            InputWarning(
                f"{len(twice):,} training image{'s are' if len(twice) > 1 else ' is'} also in another class's folder (byte for "
                f"byte; {printable(os.fsdecode(twice[0][0]))} and {printable(os.fsdecode(twice[0][1]))}): the model is taught "
                "both labels for one picture; keep each in its class (data.json lists them)"
            ),
            stacklevel=1,
        )
    return report


def written_cache(data, filename: str, count: int):
    """``data.cache(filename)``, its files written whole before anything reads them, by one
    process at a time. TensorFlow writes a cache file while the first epoch reads it, and
    fails any other reader of the same name meanwhile ("a concurrent caching iterator"):
    two runs sharing a prefix (a sweep's jobs, the same images) had failed one of them
    mid-training, and a run killed in its first epoch left a lock file that failed every
    later attempt to continue it. The other runs wait for the files (their lock: FILE.lock)."""
    import fcntl

    def take(handle, kind: int) -> None:
        try:
            lock(handle, kind | fcntl.LOCK_NB, Path(filename).parent)
        except BlockingIOError:
            logging.getLogger(__name__).warning("waiting for another run writing the same cache, %s (dataset.cache)", filename)
            fcntl.flock(handle, kind)

    if os.path.exists(f"{filename}.index") and not os.access(os.path.dirname(filename) or ".", os.W_OK):
        # Written already, in a folder this user may only read (a cache the team shares): read it
        # once its writer is done, under a shared lock (the lock file had been opened to write).
        with contextlib.suppress(FileNotFoundError), open(f"{filename}.lock") as shared:
            take(shared, fcntl.LOCK_SH)
        problem = damaged_cache(filename)
        if problem:
            raise zoo.ZooError(f"dataset.cache: {filename}.* is damaged ({problem}), and {this_user()} cannot write it again there; "
                               "ask its owner to delete those files, or give a prefix in a folder you can write")  # fmt: skip
        return data.cache(filename)
    try:
        held = open(f"{filename}.lock", "a")
    except PermissionError:
        raise zoo.ZooError(f"dataset.cache={filename}: {os.path.dirname(filename)} cannot be written by {this_user()} and does not hold "
                           "these images' cache yet; give a prefix in a folder you can write") from None  # fmt: skip
    with held:
        take(held, fcntl.LOCK_EX)
        problem = damaged_cache(filename) if os.path.exists(f"{filename}.index") else None
        if problem:
            logging.getLogger(__name__).warning("dataset.cache: %s.* is damaged (%s); writing it again", filename, problem)
            for damaged in [f"{filename}.index", *glob.glob(f"{glob.escape(filename)}.data-*")]:
                os.unlink(damaged)
        if not os.path.exists(f"{filename}.index"):  # none yet, or a killed writer's part, whose files go
            for leftover in glob.glob(f"{glob.escape(filename)}_*.lockfile") + glob.glob(f"{glob.escape(filename)}*.tempstate*"):
                os.unlink(leftover)
            with Progress(f"writing the decoded images to the cache {printable(filename)}", count) as progress:
                for batch in data.cache(filename).batch(256):  # batch by batch: Ctrl-C (SIGTERM) stops it between two
                    progress.advance(len(batch[1]))
    return data.cache(filename)


def damaged_cache(filename: str) -> str | None:
    """Why a cache TensorFlow wrote whole is no longer so (its data file cut short by a
    full disk or a machine that stopped, overwritten, its index damaged), or None. Read
    damaged, it failed training part-way in TensorFlow's words ("Iterator ... returned
    OutOfRange. This indicates an implementation error", "not an sstable"). Checked from its
    index, which lists every value's shape: the data file holds their bytes exactly."""
    import numpy as np
    import tensorflow as tf

    try:
        reader = tf.train.load_checkpoint(filename)
        shapes, types = reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()
    except (tf.errors.OpError, ValueError) as exc:
        return f"its index cannot be read: {shorten(one_line(exc), 120)}"
    listed = sum(int(np.prod(shape, dtype=np.int64)) * types[key].size for key, shape in shapes.items())
    held = sum(os.path.getsize(path) for path in glob.glob(f"{glob.escape(filename)}.data-*"))
    return None if held == listed else f"its data files hold {held:,} bytes, where its index lists {listed:,}"


def check_split_classes(found, names: list[str], made: list[str], config: ImageFolderConfig) -> None:
    """Where the zoo split validation and test off train/, a class too small to be in every
    split: with no training image it is refused, as an empty class folder is (it had trained
    unsaid, the class never seen, and scored as never predicted); with no validation image,
    said as for a validation folder."""
    import numpy as np

    if not made:
        return
    counts = {split: np.bincount(labels, minlength=len(names)) for split, (_, labels) in found.items()}
    total = sum(counts.values())
    untrained = [label for label in range(len(names)) if counts["train"][label] == 0]
    if untrained:
        label = untrained[0]
        raise zoo.ZooError(
            f"class {names[label]!r} has {total[label]} readable image{'s' if total[label] != 1 else ''}, all split off for "
            f"{' and '.join(made)} ({', '.join(f'dataset.{split}_fraction' for split in made)}): training would never see it; add images to "
            f"{Path(config.path) / names[label]}, or remove the folder to drop the class"
        )
    unvalidated = [names[label] for label in range(len(names)) if "validation" in made and counts["validation"][label] == 0]
    if unvalidated:
        warnings.warn(
            InputWarning(
                f"the validation split made from {config.path} holds no image of class{'es' if len(unvalidated) > 1 else ''} "
                f"{shorten(', '.join(map(repr, unvalidated)), 80)} (too few images to put one in each split): the val_ "
                f"recall, F1 and AUC count {'them' if len(unvalidated) > 1 else 'it'} as undefined; add some"
            ),
            stacklevel=1,
        )


def _split_missing(found, config: ImageFolderConfig, seed: int):
    """Split validation and test off train where their folders are absent, stratified."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    paths, labels = found["train"]
    for split, fraction in (("test", config.test_fraction), ("validation", config.validation_fraction)):
        if split in found:
            continue
        share = fraction / (1.0 - (config.test_fraction if split == "validation" and "test" not in found else 0.0))
        held = math.ceil(share * len(paths))  # as scikit-learn counts the split off
        if len(paths) - held < 1:
            raise zoo.ZooError(
                f"dataset.path={config.path}: {len(found['train'][0])} readable training images are too few to split off "
                f"a {split} share of {fraction}; add images, or give {split}/ (and the other splits) folders of their own"
            )
        counts = np.bincount(labels) if len(labels) else []
        classes = np.count_nonzero(counts)
        # Stratified only where every class can be in both parts (tiny folders: a plain split).
        stratify = labels if min(counts, default=0) >= 2 and min(held, len(paths) - held) >= classes else None
        paths, held_paths, labels, held_labels = train_test_split(paths, labels, test_size=share, stratify=stratify, random_state=seed)
        found[split] = (held_paths, held_labels)
    found["train"] = (paths, labels)
    return found


def write_example_folder(directory: Path) -> dict:
    """A tiny folder of drawn cats and other shapes (PNG and JPEG), plus one broken file in
    each class: what the tests train on."""
    import numpy as np
    from PIL import Image

    from zoo_plugins.cats import draw_scene

    root = Path(directory) / "image_folder"
    rng = np.random.default_rng(0)
    for label, name in enumerate(("not_cat", "cat")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(12):
            suffix = ".png" if i % 2 else ".jpg"
            Image.fromarray(draw_scene(rng, 40, bool(label))).save(root / name / f"{i:03d}{suffix}")
        (root / name / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
        (root / name / "notes.txt").write_text("not an image\n")
    return {"path": str(root), "image_size": [32, 32]}


@zoo.hookimpl
def register_datasets():
    return [
        zoo.DatasetPlugin(
            name="image_folder",
            summary="Your labelled images: one sub-folder per class (optionally train/validation/test), resized, cached.",
            config=ImageFolderConfig,
            describe=describe_image_folder,
            factory=load_image_folder,
            tiny=write_example_folder,
        )
    ]
