"""``cifar10``: the CIFAR-10 "python version" archive, read from a local file.

The archive (``cifar-10-python.tar.gz``, 163 MB, from
https://www.cs.toronto.edu/~kriz/cifar.html) holds pickled batches. Pickle can run code
while loading, so batches are read with an unpickler that builds only the dicts, lists,
strings and NumPy arrays the format uses, and refuses anything else.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import zoo
from zoo.artifacts import cannot_read, check_readable, download_problem, downloading, keras_folder
from zoo.errors import InputWarning, one_line

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
# The archive's sha256, as keras.datasets.cifar10 checks it: Keras keeps downloads in /tmp/.keras
# where the home cannot be written, where another user's file of that name had been used as is.
SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
ARCHIVE = "cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CAT = CLASSES.index("cat")
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))


@dataclass
class Cifar10Config:
    path: Optional[str] = zoo.data_path(f"{ARCHIVE} or its extracted {FOLDER}/ (null: look in $ZOO_DATA_DIR, then ~/.keras/datasets).")
    cat_vs_rest: bool = field(default=False, metadata={"help": "Binary task: cat (1) against the nine other classes (0)."})
    download: bool = field(default=False, metadata={"help": f"Fetch the archive from {URL} when it is not found."})
    validation_fraction: float = field(default=0.1, metadata={"help": "Share of the 50,000 training images held out for validation."})

    def __post_init__(self) -> None:
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be between 0 and 1, got {self.validation_fraction}")


def search_paths() -> list[Path]:
    folders = [Path(os.environ["ZOO_DATA_DIR"])] if os.environ.get("ZOO_DATA_DIR") else []
    folders.append(keras_folder() / "datasets")  # where keras.datasets.cifar10 leaves it
    return [folder / name for folder in folders for name in (FOLDER, ARCHIVE)]


def kept_by_keras(path: Path) -> bool:
    """Whether what lies in Keras' downloads folder is CIFAR-10 as Keras would keep it, as
    Keras checks its downloads before it uses them: the archive of its sha256, a folder this
    user's. That folder may be ``/tmp/.keras``, which any user can fill (a home not
    writable): another user's archive of that name there had been trained on."""
    import hashlib
    import warnings

    if path.is_dir():
        if path.stat().st_uid == os.geteuid():
            return True
        problem = "it is another user's"
    else:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() == SHA256:
            return True
        problem = "it is not CIFAR-10's archive (its sha256 differs)"
    warnings.warn(f"skipped {path}: {problem}", InputWarning, stacklevel=3)
    return False


def locate(config: Cifar10Config) -> Path:
    if config.path is not None:
        path = Path(config.path).expanduser()
        if path.is_file() or path.is_dir():
            check_readable(path)  # before TensorFlow starts
            return path
        if path.exists():  # a pipe (tarfile would wait on it for ever) or a device
            raise zoo.ZooError(f"dataset.path={config.path} is not a regular file or a folder; give the {ARCHIVE} file or the {FOLDER}/ folder")
        raise zoo.ZooError(f"dataset.path={config.path} does not exist; give the {ARCHIVE} file or the {FOLDER}/ folder")
    for path in search_paths():
        if path.exists() and not (path.parent == keras_folder() / "datasets" and not kept_by_keras(path)):
            return path
    if config.download:
        import keras

        try:
            with downloading():
                return Path(keras.utils.get_file(ARCHIVE, URL, file_hash=SHA256))
        except Exception as exc:  # noqa: BLE001 - network errors come in many types
            problem = download_problem(exc) or one_line(exc)
            raise zoo.ZooError(f"could not download CIFAR-10 from {URL} ({problem}); download it elsewhere and pass dataset.path=") from None
    raise zoo.ZooError(
        f"CIFAR-10 not found (looked for {', '.join(str(p) for p in search_paths())}); download {URL} "
        f"and pass dataset.path=/path/to/{ARCHIVE}, or set dataset.download=true"
    )


class BatchUnpickler(pickle.Unpickler):
    """Builds only what CIFAR batches contain: NumPy arrays inside plain containers."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol 2 stores bytes when written by Python 3
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"a CIFAR-10 batch should not contain {module}.{name}")
        return super().find_class(module, name)


def check_batch_size(size: int, where: str) -> None:
    if size > MAX_BATCH_BYTES:
        raise zoo.ZooError(
            f"{where} is {size:,} bytes, far beyond a CIFAR-10 batch (about 31 MB): not the CIFAR-10 archive; re-download {URL}"
        )


def read_batch(data: bytes, where: str):
    import numpy as np

    try:
        batch = BatchUnpickler(io.BytesIO(data), encoding="bytes").load()
        images, labels = batch[b"data"], batch[b"labels"]
    except Exception as exc:  # noqa: BLE001 - a damaged file fails in many ways
        raise zoo.ZooError(f"{where} is not a CIFAR-10 python batch ({exc}); re-download {URL}") from None
    # Only the archive's own types: a pickle can share one row among millions of list entries
    # (a few MB that NumPy would spend minutes and gigabytes spelling out), and an array's
    # bytes are in the file, so its size is bounded by the file's.
    if not (isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 2 and images.shape[1] == 3072):
        raise zoo.ZooError(f"{where} is not a CIFAR-10 python batch (its data is not an array of 3,072 bytes per image); re-download {URL}")
    if not (isinstance(labels, list) and all(type(label) is int and 0 <= label < len(CLASSES) for label in labels)):
        raise zoo.ZooError(f"{where} is not a CIFAR-10 python batch (its labels are not a list of class numbers 0 to 9); re-download {URL}")
    if len(images) != len(labels):
        raise zoo.ZooError(f"{where} has {len(images)} images but {len(labels)} labels; re-download {URL}")
    return images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), np.asarray(labels, dtype=np.int32)


# A batch of the real archive is 31,035,xxx bytes (10,000 images of 3,072 bytes, labels and
# names). A member far beyond that is not CIFAR-10, and reading it whole could take all the
# memory there is (a 3.6 GB member, or a sparse one claiming terabytes): refused unread.
MAX_BATCH_BYTES = 40_000_000
# The archive holds nine files; reading the headers of millions (a few MB compressed) would
# take minutes and gigabytes, as tarfile keeps each one.
MAX_MEMBERS = 100


def read_batches(path: Path) -> dict[str, tuple]:
    wanted = (*TRAIN_BATCHES, "test_batch")
    batches = {}
    if path.is_dir():
        for name in wanted:
            if (path / name).is_file():
                check_batch_size((path / name).stat().st_size, str(path / name))
                try:
                    data = (path / name).read_bytes()
                except OSError as exc:
                    raise cannot_read(path / name, exc) from None
                batches[name] = read_batch(data, str(path / name))
    else:
        try:
            with tarfile.open(path, "r:*") as archive:
                for count, member in enumerate(archive, 1):  # one header at a time, not getmembers()
                    if count > MAX_MEMBERS:
                        raise zoo.ZooError(f"{path} holds more than {MAX_MEMBERS} files, which no CIFAR-10 archive does; re-download {URL}")
                    name = Path(member.name).name
                    if name not in wanted or not (member.isfile() or member.issparse()):
                        continue
                    where = f"{path}:{member.name}"
                    if member.issparse():
                        raise zoo.ZooError(f"{where} is a sparse file, which no CIFAR-10 archive holds; re-download {URL}")
                    check_batch_size(member.size, where)
                    data = archive.extractfile(member).read(MAX_BATCH_BYTES + 1)  # bounded whatever the header says
                    check_batch_size(len(data), where)
                    batches[name] = read_batch(data, where)
        except PermissionError as exc:  # another user's: not damaged
            raise cannot_read(path, exc) from None
        except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:  # damaged, or cut short
            reason = one_line(exc)  # tarfile lists each method it tried on its own line
            raise zoo.ZooError(f"{path} is not a readable tar archive ({reason}); re-download {URL}") from None
    missing = [name for name in wanted if name not in batches]
    if "test_batch" in missing or len(missing) == len(wanted):
        raise zoo.ZooError(f"{path} lacks the CIFAR-10 batch {missing[0]}; re-download {URL}")
    return batches


def describe_cifar10(config: Cifar10Config) -> zoo.DataSpec:
    if not config.download:
        locate(config)  # a missing archive is reported before any TensorFlow work (a stat or two)
    names = ("not_cat", "cat") if config.cat_vs_rest else CLASSES
    return zoo.DataSpec(zoo.CLASSIFICATION, (32, 32, 3), num_classes=len(names), class_names=names, value_range=(0.0, 1.0))


def load_cifar10(config: Cifar10Config, seed: int) -> zoo.Splits:
    import numpy as np
    from sklearn.model_selection import train_test_split

    path = locate(config)
    batches = read_batches(path)
    train_x = np.concatenate([batches[name][0] for name in TRAIN_BATCHES if name in batches])
    train_y = np.concatenate([batches[name][1] for name in TRAIN_BATCHES if name in batches])
    test_x, test_y = batches["test_batch"]
    if config.cat_vs_rest:
        train_y, test_y = (train_y == CAT).astype(np.int32), (test_y == CAT).astype(np.int32)
    train_x, val_x, train_y, val_y = train_test_split(
        train_x, train_y, test_size=config.validation_fraction, stratify=train_y, random_state=seed
    )

    def scaled(x):
        return x.astype(np.float32) / 255.0

    return zoo.Splits(
        train=(scaled(train_x), train_y),
        validation=(scaled(val_x), val_y),
        test=(scaled(test_x), test_y),
        report={"source": str(path), "images": {"train": len(train_x), "validation": len(val_x), "test": len(test_x)}},
    )


def write_batch(images, labels) -> bytes:
    """One batch in the archive's own format (a pickled dict of byte-string keys)."""
    import numpy as np

    data = np.asarray(images, dtype=np.uint8).transpose(0, 3, 1, 2).reshape(len(images), -1)
    batch = {b"batch_label": b"zoo example", b"labels": [int(v) for v in labels], b"data": data,
             b"filenames": [f"{i}.png".encode() for i in range(len(labels))]}  # fmt: skip
    return pickle.dumps(batch, protocol=2)


def write_example_archive(directory: Path) -> dict:
    """A small ``cifar-10-python.tar.gz`` in the real format: random images, every class
    in every batch (the tests train on it)."""
    import numpy as np

    rng = np.random.default_rng(0)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    archive_path = directory / ARCHIVE
    with tarfile.open(archive_path, "w:gz") as archive:
        for name in (*TRAIN_BATCHES, "test_batch"):
            labels = np.tile(np.arange(10), 4)
            # Each class gets its own mean colour, so that a model can learn something.
            images = rng.integers(0, 64, size=(len(labels), 32, 32, 3)) + (labels * 19)[:, None, None, None]
            data = write_batch(images.clip(0, 255), labels)
            info = tarfile.TarInfo(f"{FOLDER}/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return {"path": str(archive_path)}


@zoo.hookimpl
def register_datasets():
    return [
        zoo.DatasetPlugin(
            name="cifar10",
            summary="CIFAR-10 (60,000 32x32 colour images, 10 classes) from its python archive; cat_vs_rest option.",
            config=Cifar10Config,
            describe=describe_cifar10,
            factory=load_cifar10,
            tiny=write_example_archive,
        )
    ]
