"""Datasets that read users' files: real formats written here, bad files met head-on."""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest

import zoo
from zoo.errors import InputWarning
from zoo_plugins import cifar10, image_folder

from conftest import error_lines, run_zoo


def test_cifar10_reads_the_archive_and_its_extracted_folder_alike(tmp_path):
    overrides = cifar10.write_example_archive(tmp_path)
    from_archive = zoo.create_dataset("cifar10", **overrides).load(seed=0)
    with tarfile.open(overrides["path"]) as archive:
        archive.extractall(tmp_path, filter="data")
    from_folder = zoo.create_dataset("cifar10", path=str(tmp_path / cifar10.FOLDER)).load(seed=0)
    for a, b in zip(from_archive.test, from_folder.test):
        np.testing.assert_array_equal(a, b)
    x, y = from_archive.test
    assert x.shape == (40, 32, 32, 3) and x.dtype == np.float32 and sorted(set(y)) == list(range(10))

    binary = zoo.create_dataset("cifar10", cat_vs_rest=True, **overrides)
    assert binary.spec.class_names == ("not_cat", "cat")
    assert int(binary.load(seed=0).test[1].sum()) == 4  # the 4 cats of 40


def test_cifar10_refuses_pickles_that_would_run_code(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (print, ("this must never run",))

    archive_path = tmp_path / cifar10.ARCHIVE
    with tarfile.open(archive_path, "w:gz") as archive:
        data = pickle.dumps({b"data": Exploit(), b"labels": []}, protocol=2)
        info = tarfile.TarInfo(f"{cifar10.FOLDER}/test_batch")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    with pytest.raises(zoo.ZooError, match="should not contain (__builtin__|builtins).print"):
        zoo.create_dataset("cifar10", path=str(archive_path)).load(seed=0)


def test_cifar10_refuses_huge_and_sparse_members_without_reading_them(tmp_path):
    """A member far bigger than a batch (read whole it took 3.6 GB), or a GNU sparse one
    claiming gigabytes (a MemoryError), is refused in one line before it is read."""
    import shutil
    import subprocess

    huge = tmp_path / "huge.tar.gz"
    with tarfile.open(huge, "w:gz", compresslevel=1) as archive:
        info = tarfile.TarInfo(f"{cifar10.FOLDER}/test_batch")
        info.size = 64_000_000
        archive.addfile(info, io.BytesIO(bytes(info.size)))
    with pytest.raises(zoo.ZooError, match=r"test_batch is 64,000,000 bytes, far beyond a CIFAR-10 batch"):
        zoo.create_dataset("cifar10", path=str(huge)).load(seed=0)

    folder = tmp_path / "extracted" / cifar10.FOLDER
    folder.mkdir(parents=True)
    with (folder / "test_batch").open("wb") as handle:
        handle.truncate(8 * 2**30)  # 8 GiB that take no disk (a sparse file)
    with pytest.raises(zoo.ZooError, match=r"test_batch is 8,589,934,592 bytes, far beyond"):
        zoo.create_dataset("cifar10", path=str(folder)).load(seed=0)
    if shutil.which("tar") is None:
        return
    sparse = tmp_path / "sparse.tar"
    subprocess.run(["tar", "--sparse", "-cf", str(sparse), "-C", str(folder.parent), f"{cifar10.FOLDER}/test_batch"], check=True)
    assert sparse.stat().st_size < 1_000_000
    with pytest.raises(zoo.ZooError, match=r"test_batch is a sparse file, which no CIFAR-10 archive holds"):
        zoo.create_dataset("cifar10", path=str(sparse)).load(seed=0)


def write_members(path, members):
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members:
            info = tarfile.TarInfo(f"{cifar10.FOLDER}/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def test_cifar10_refuses_small_archives_that_would_expand_to_gigabytes(tmp_path):
    """A batch whose rows are one shared list (pickle memoises it: 800 KB for 200,000
    images) trained for minutes on 2.4 GB; millions of empty members kept every header in
    memory. Both are refused before anything grows."""
    row = [7] * 3072
    shared = pickle.dumps({b"data": [row] * 200_000, b"labels": [1] * 200_000}, protocol=2)
    assert len(shared) < 1_000_000
    write_members(tmp_path / "shared.tar.gz", [("data_batch_1", shared), ("test_batch", shared)])
    with pytest.raises(zoo.ZooError, match=r"data_batch_1 is not a CIFAR-10 python batch \(its data is not an array of 3,072 bytes"):
        zoo.create_dataset("cifar10", path=str(tmp_path / "shared.tar.gz")).load(seed=0)

    write_members(tmp_path / "many.tar.gz", [(f"{i}", b"") for i in range(cifar10.MAX_MEMBERS + 1)])
    with pytest.raises(zoo.ZooError, match=rf"many.tar.gz holds more than {cifar10.MAX_MEMBERS} files, which no CIFAR-10 archive does"):
        zoo.create_dataset("cifar10", path=str(tmp_path / "many.tar.gz")).load(seed=0)

    labels = cifar10.write_batch(np.zeros((4, 32, 32, 3)), [0, 1, 2, 42])
    write_members(tmp_path / "labels.tar.gz", [("data_batch_1", labels), ("test_batch", labels)])
    with pytest.raises(zoo.ZooError, match=r"data_batch_1 is not a CIFAR-10 python batch \(its labels are not a list of class numbers 0 to 9\)"):
        zoo.create_dataset("cifar10", path=str(tmp_path / "labels.tar.gz")).load(seed=0)


def test_cifar10_says_how_to_provide_the_archive(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("ZOO_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(zoo.ZooError, match=r"CIFAR-10 not found .*download https://www\.cs\.toronto\.edu/.* and pass dataset\.path="):
        zoo.create_dataset("cifar10").load(seed=0)
    (tmp_path / "broken.tar.gz").write_bytes(b"not an archive")
    with pytest.raises(zoo.ZooError, match="is not a readable tar archive") as raised:
        zoo.create_dataset("cifar10", path=str(tmp_path / "broken.tar.gz")).load(seed=0)
    assert "\n" not in str(raised.value)  # tarfile's reasons, one per method, on one line
    whole = Path(cifar10.write_example_archive(tmp_path / "whole")["path"]).read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(whole[: len(whole) // 2])  # an interrupted download
    with pytest.raises(zoo.ZooError, match="cut.tar.gz is not a readable tar archive .*re-download"):
        zoo.create_dataset("cifar10", path=str(tmp_path / "cut.tar.gz")).load(seed=0)


def test_a_cifar10_download_is_checked_against_its_hash(tmp_path):
    """Keras keeps its downloads in /tmp/.keras where the home cannot be written: another
    user's file of that name there was trained on as CIFAR-10. The archive is checked
    against the sha256 keras.datasets.cifar10 knows; a file that differs is downloaded
    again (here, with no network but a proxy on a closed loopback port, that fails)."""
    keras_home = tmp_path / "keras"
    planted = Path(cifar10.write_example_archive(tmp_path / "planted")["path"])
    (keras_home / "datasets").mkdir(parents=True)
    planted.rename(keras_home / "datasets" / cifar10.ARCHIVE)
    offline = {"KERAS_HOME": str(keras_home), "HOME": str(tmp_path / "home"), "ZOO_DATA_DIR": str(tmp_path / "none"),
               "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}  # fmt: skip
    result = run_zoo("train", "dataset=cifar10", "dataset.download=true", "trainer.epochs=1", f"hydra.run.dir={tmp_path / 'run'}", env=offline)
    assert result.returncode == 2 and not (tmp_path / "run" / "metrics.json").exists(), result.stderr[-2000:]
    assert f"could not download CIFAR-10 from {cifar10.URL}" in error_lines(result.stderr)[0]
    # Found there without a download asked for: passed over, as Keras passes over a download that differs.
    planted = Path(cifar10.write_example_archive(tmp_path / "planted")["path"])  # Keras removed the one it could not replace
    planted.rename(keras_home / "datasets" / cifar10.ARCHIVE)
    result = run_zoo("train", "dataset=cifar10", "trainer.epochs=1", f"hydra.run.dir={tmp_path / 'run'}", env=offline)
    assert result.returncode == 2 and error_lines(result.stderr)[0].startswith("zoo: error: CIFAR-10 not found"), result.stderr[-2000:]
    assert f"skipped {keras_home / 'datasets' / cifar10.ARCHIVE}: it is not CIFAR-10's archive (its sha256 differs)" in result.stderr


def write_pngs(folder, count: int, value: int):
    from PIL import Image

    from PIL.PngImagePlugin import PngInfo

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        numbered = PngInfo()
        numbered.add_text("file", str(folder / f"{i}.png"))  # the same pixels, files of their own: copies are said as such
        Image.fromarray(np.full((20, 30, 3), value, dtype=np.uint8)).save(folder / f"{i}.png", pnginfo=numbered)


def test_image_folder_uses_given_split_folders_and_a_seeded_split_for_the_missing_one(tmp_path):
    for name, value in (("a", 30), ("b", 220)):
        write_pngs(tmp_path / "train" / name, 10, value)
        write_pngs(tmp_path / "test" / name, 3, value)
    data = zoo.create_dataset("image_folder", path=str(tmp_path), image_size=[16, 12], channels=1, cache="off")
    assert data.spec.input_shape == (16, 12, 1) and data.spec.class_names == ("a", "b")
    splits = data.load(seed=0)
    assert splits.report["images"] == {"train": 17, "validation": 3, "test": 6}
    assert splits.report["skipped"] == []
    images, labels = zip(*((x.numpy(), y.numpy()) for x, y in splits.test))
    assert sorted(labels) == [0, 0, 0, 1, 1, 1]
    for image, label in zip(images, labels):  # resized, one channel, scaled to [0, 1]
        assert image.shape == (16, 12, 1)
        np.testing.assert_allclose(image, (30 if label == 0 else 220) / 255, atol=1 / 255)


@pytest.mark.parametrize("name", ["train", "val", "test"])
def test_a_class_named_like_a_split_is_a_class(name, tmp_path):
    """Vehicles (bus, car, train), a trial (control, test): a class folder named like a split
    had been taken for one, the run refused on "test has no readable images in its class
    folders". A folder of images is a class; split folders beside other folders are refused."""
    for folder, value in (("bus", 30), ("car", 120), (name, 220)):
        write_pngs(tmp_path / "images" / folder, 6, value)
    data = zoo.create_dataset("image_folder", path=str(tmp_path / "images"), image_size=[8, 8], cache="off")
    assert data.spec.class_names == tuple(sorted(("bus", "car", name)))
    assert sum(data.load(seed=0).report["images"].values()) == 18
    write_pngs(tmp_path / "split" / "train" / "bus", 6, 30)
    write_pngs(tmp_path / "split" / "train" / "car", 6, 120)
    write_pngs(tmp_path / "split" / "extra", 6, 220)
    with pytest.raises(zoo.ZooError, match=r"holds split folders \(train/\) and other folders beside them \(extra/\): put every class"):
        zoo.create_dataset("image_folder", path=str(tmp_path / "split"), image_size=[8, 8], cache="off").spec


def test_a_cache_prefix_too_long_for_its_files_names_is_refused(tmp_path):
    """TensorFlow names a split's cache PREFIX_validation_<key>_0.data-00000-of-00001.tempstate<digits>:
    past 255 bytes the run failed in its first epoch, on "...lock: File name too long"."""
    write_pngs(tmp_path / "images" / "a", 4, 30)
    write_pngs(tmp_path / "images" / "b", 4, 220)
    with pytest.raises(zoo.ZooError, match="its files' names would pass the 255 bytes a file name may have; give a shorter prefix"):
        zoo.create_dataset("image_folder", path=str(tmp_path / "images"), cache=str(tmp_path / ("c" * 176)))
    zoo.create_dataset("image_folder", path=str(tmp_path / "images"), cache=str(tmp_path / ("c" * 175)))  # the longest that fits


def test_a_validation_folder_without_a_class_is_warned_about(tmp_path):
    """Its val_ recall, F1 and AUC quietly counted the class as undefined."""
    for name, value in (("cat", 30), ("dog", 220)):
        write_pngs(tmp_path / "train" / name, 6, value)
    write_pngs(tmp_path / "validation" / "cat", 2, 30)
    (tmp_path / "validation" / "dog").mkdir()
    data = zoo.create_dataset("image_folder", path=str(tmp_path), image_size=[8, 8], cache="off")
    with pytest.warns(InputWarning, match=r"the validation folder .*validation holds no image of class 'dog': the val_ recall"):
        splits = data.load(seed=0)
    assert splits.report["images"]["validation"] == 2


def test_large_images_get_a_shuffle_buffer_bounded_in_memory_over_a_mixed_order(tmp_path):
    import tensorflow as tf

    from zoo.config import TrainerConfig
    from zoo.run import shuffle_buffer_size

    for name, value in (("a", 30), ("b", 220)):
        write_pngs(tmp_path / "train" / name, 20, value)
        write_pngs(tmp_path / "test" / name, 2, value)
    data = zoo.create_dataset("image_folder", path=str(tmp_path), image_size=[128, 128], cache="off")
    train = data.load(seed=0).train
    # Given as class folders, one class after the other; trained on in a seeded random order.
    labels = [int(y) for _, y in train]
    assert sorted(labels) != labels and labels.count(0) == labels.count(1) == 17
    example_bytes = 128 * 128 * 3 * 4 + 4  # float32 image and int32 label
    assert shuffle_buffer_size(tf, train, TrainerConfig(shuffle_memory_mb=1)) == 2**20 // example_bytes
    assert shuffle_buffer_size(tf, train, TrainerConfig(shuffle_buffer=5)) == 5
    arrays = (np.zeros((10, 8, 8), np.float32), np.zeros(10, np.int64))
    assert shuffle_buffer_size(tf, arrays, TrainerConfig(shuffle_memory_mb=4)) == 10_000  # 264 bytes each: all fit


def test_a_shuffle_buffer_beyond_memory_is_refused_and_one_beyond_the_split_is_not(tmp_path, monkeypatch):
    """trainer.shuffle_memory_mb raised past the machine's memory had the kernel kill the run
    as the buffer filled; a buffer larger than the split holds only the split."""
    import tensorflow as tf

    import zoo.config
    from zoo.config import TrainerConfig
    from zoo.run import shuffle_buffer_size

    for name, value in (("a", 30), ("b", 220)):
        write_pngs(tmp_path / name, 10, value)
    train = zoo.create_dataset("image_folder", path=str(tmp_path), image_size=[128, 128], cache="off").load(seed=0).train
    example_bytes = 128 * 128 * 3 * 4 + 4
    count = int(train.cardinality())
    monkeypatch.setattr(zoo.config, "physical_memory", lambda: 2 * example_bytes * (count - 1))  # all but one fit
    generous = TrainerConfig(shuffle_memory_mb=1024)
    with pytest.raises(zoo.ZooError, match=rf"^a shuffle buffer of {count} examples of {example_bytes:,} bytes .*; lower trainer.shuffle_memory_mb"):
        shuffle_buffer_size(tf, train, generous)
    assert shuffle_buffer_size(tf, train.take(count - 1), generous) == 1024 * 2**20 // example_bytes  # it holds what the split has


def test_image_folder_skips_and_counts_the_files_it_cannot_use(tmp_path):
    """Corrupt, truncated, zero-byte and non-image files are skipped, each listed with its
    reason; the good images are all used."""
    from PIL import Image

    for name, value in (("a", 30), ("b", 220)):
        write_pngs(tmp_path / name, 6, value)
    noisy = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(noisy)
    whole = noisy.read_bytes()
    noisy.unlink()
    bad = {
        "a/truncated.png": whole[: len(whole) // 2],
        "a/empty.jpg": b"",
        "b/corrupt.jpg": b"\xff\xd8\xff\xe0" + bytes(200),
        "b/notes.txt": b"not a picture",
    }
    for name, content in bad.items():
        (tmp_path / name).write_bytes(content)
    # Left out unsaid before: a pipe (opening it would wait for ever) and a link whose target is gone.
    os.mkfifo(tmp_path / "a" / "pipe.png")
    (tmp_path / "b" / "moved.jpg").symlink_to(tmp_path / "elsewhere.jpg")
    bad.update({"a/pipe.png": b"", "b/moved.jpg": b""})
    splits = zoo.create_dataset("image_folder", path=str(tmp_path), image_size=[8, 8], cache="off").load(seed=0)
    assert sum(splits.report["images"].values()) == 12
    skipped = splits.report["skipped"]
    assert sorted(line.split(": ")[0] for line in skipped) == sorted(str(tmp_path / name) for name in bad)
    assert f"{tmp_path / 'a' / 'pipe.png'}: not a regular file (a pipe, a socket or a device)" in skipped
    assert f"{tmp_path / 'b' / 'moved.jpg'}: a link to {tmp_path / 'elsewhere.jpg'}, which does not exist" in skipped
    assert sum(1 for _ in splits.train) + sum(1 for _ in splits.validation) + sum(1 for _ in splits.test) == 12


def test_images_in_formats_tensorflow_does_not_decode_are_skipped_whatever_their_names(tmp_path):
    """Pillow read them, TensorFlow does not: a TIFF (or ICO, PPM) named .png or .jpg, as
    downloads are often misnamed, passed the check and failed the run in its first epoch on
    "an image was overwritten with something that is not an image while the run read its
    dataset"; a .webp or .heic was "not an image file". Skipped, each said to be an image to
    convert; a JPEG named .jfif (as Windows saves them) is read."""
    from PIL import Image

    for name, value in (("a", 30), ("b", 220)):
        write_pngs(tmp_path / name, 6, value)
    pixels = np.full((16, 16, 3), 90, dtype=np.uint8)
    disguised = {"a/scan.png": "TIFF", "a/icon.jpg": "ICO", "b/frame.jpg": "PPM"}
    for name, fmt in disguised.items():
        Image.fromarray(pixels).save(tmp_path / name, format=fmt)
    Image.fromarray(pixels).save(tmp_path / "b" / "photo.webp", format="WEBP")
    Image.fromarray(pixels).save(tmp_path / "b" / "saved.jfif", format="JPEG")
    splits = zoo.create_dataset("image_folder", path=str(tmp_path), image_size=[8, 8], cache="off").load(seed=0)
    assert sum(splits.report["images"].values()) == 13  # six of each class and the .jfif
    convert = "convert it to PNG or JPEG (Pillow, ImageMagick's mogrify)"
    assert sorted(splits.report["skipped"]) == sorted(
        [f"{tmp_path / name}: holds an image in {fmt} format (named {Path(name).suffix}), not one the image folder reads; {convert}"
         for name, fmt in disguised.items()]
        + [f"{tmp_path / 'b' / 'photo.webp'}: a .webp image, not a format the image folder reads (it reads .jpg, .jpeg, .jfif, "
           f".jpe, .png, .bmp, .gif); {convert}"]
    )  # fmt: skip
    assert sum(1 for _ in splits.train) + sum(1 for _ in splits.validation) + sum(1 for _ in splits.test) == 13
    from zoo.inference import image_paths  # zoo predict, given the folder, reads the .jfif too (and .webp: Pillow reads it)

    assert {path.name for path, _ in image_paths([str(tmp_path / "b")])} >= {"saved.jfif", "photo.webp"}


def test_what_a_mac_zip_and_jupyter_leave_is_neither_a_class_nor_an_image(tmp_path):
    """A Mac's zip holds __MACOSX/ (a copy of the tree of ._ resource files) and ._ files
    beside the images; Jupyter leaves .ipynb_checkpoints/. None is a class, and none is an
    image to skip with a warning: they are not the user's data. Predictions skip them too."""
    from zoo.inference import image_paths

    for name, value in (("a", 30), ("b", 220)):
        write_pngs(tmp_path / name, 6, value)
        write_pngs(tmp_path / name / ".ipynb_checkpoints", 2, 128)  # decodable, still not data
        (tmp_path / name / f"._{name}0.png").write_bytes(b"\x00\x05\x16\x07" + bytes(200))  # AppleDouble
        (tmp_path / "__MACOSX" / name).mkdir(parents=True)
        (tmp_path / "__MACOSX" / name / "._0.png").write_bytes(b"\x00\x05\x16\x07" + bytes(200))
    (tmp_path / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    data = zoo.create_dataset("image_folder", path=str(tmp_path), image_size=[8, 8], cache="off")
    assert data.spec.class_names == ("a", "b")
    splits = data.load(seed=0)
    assert sum(splits.report["images"].values()) == 12 and splits.report["skipped"] == []
    assert sorted(path.name for path, _ in image_paths([str(tmp_path)])) == sorted([f"{i}.png" for i in range(6)] * 2)


def test_image_folder_takes_file_names_that_are_not_utf8(tmp_path):
    """Linux names are bytes: one that is not UTF-8 (a Latin-1 camera's) is still read and
    trained on, and shown escaped where it is skipped (data.json, the log); a class folder
    so named is refused, since its name becomes the class's."""
    import os
    import shutil

    for name, value in (("a", 30), ("b", 220)):
        write_pngs(tmp_path / name, 4, value)
    shutil.copy(tmp_path / "a" / "0.png", os.fsdecode(bytes(tmp_path / "a") + b"/caf\xe9.png"))
    Path(os.fsdecode(bytes(tmp_path / "b") + b"/\xff.png")).write_bytes(b"not a picture")
    splits = zoo.create_dataset("image_folder", path=str(tmp_path), image_size=[8, 8], cache="off").load(seed=0)
    assert sum(splits.report["images"].values()) == 9
    assert sum(1 for _ in splits.train) + sum(1 for _ in splits.validation) + sum(1 for _ in splits.test) == 9
    [skipped] = splits.report["skipped"]
    assert skipped.startswith(f"{tmp_path / 'b'}/\\xff.png: ") and json.loads(json.dumps(skipped)) == skipped
    shutil.move(tmp_path / "b", os.fsdecode(bytes(tmp_path) + b"/b\xe9"))
    with pytest.raises(zoo.ZooError, match=r"class folder .*/b\\xe9 has a name that is not UTF-8 text; rename it"):
        zoo.create_dataset("image_folder", path=str(tmp_path))


def test_a_skipped_files_name_reaches_the_terminal_and_train_log_escaped(tmp_path):
    """The names of an image folder's files are its author's: a skipped one named with a
    terminal escape (OSC 0 sets the window's title, OSC 52 the clipboard) reached the terminal
    raw, and one with a line break wrote a line of its own into train.log ("test accuracy
    0.9999")."""
    for name, value in (("a", 30), ("b", 220)):
        write_pngs(tmp_path / "data" / name, 6, value)
    forged = "[2026-01-01 00:00:00,000][zoo.run][INFO] - test accuracy 0.9999"
    (tmp_path / "data" / "a" / f"x\n{forged}.png").write_bytes(b"junk")
    (tmp_path / "data" / "b" / "t\x1b]0;owned\x07.png").write_bytes(b"junk")
    run = tmp_path / "run"
    result = run_zoo("train", "dataset=image_folder", f"dataset.path={tmp_path / 'data'}", "dataset.image_size=[8,8]",
                     "trainer.epochs=1", f"hydra.run.dir={run}", cwd=tmp_path, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    shown = result.stdout + result.stderr
    assert "\x1b" not in shown and f"a/x\\x0a{forged}.png: does not decode" in shown and "b/t\\x1b]0;owned\\x07.png" in shown
    log = (run / "train.log").read_text()
    assert "\x1b" not in log and not any(line.startswith(forged) for line in log.splitlines())


def test_an_image_folder_trains_under_a_temporary_folder_whose_name_is_not_utf8(tmp_path):
    """AutoGraph writes the code it generates into TMPDIR and hands each file's name to C++ as
    UTF-8: under a TMPDIR named on a Latin-1 machine every image-folder run failed in its
    pipeline's first map ("Unable to cast Python instance of type <class 'str'> to C++ type")."""
    for name, value in (("a", 30), ("b", 220)):
        write_pngs(tmp_path / "data" / name, 6, value)
    temporary = tmp_path / "tmp\udcff"
    temporary.mkdir()
    result = run_zoo("train", "dataset=image_folder", f"dataset.path={tmp_path / 'data'}", "dataset.image_size=[8,8]",
                     "trainer.epochs=1", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, env={"TMPDIR": str(temporary)},
                     timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "run" / "metrics.json").is_file()


def test_class_names_beyond_ascii_under_an_ascii_locale_name_the_locale_not_the_names(tmp_path):
    """Under LC_ALL=C with Python's UTF-8 mode off, Python reads every file name as ASCII:
    folders 猫 and 犬 had been refused as "not UTF-8 text; rename it"."""
    for name, value in (("猫", 30), ("犬", 220)):
        write_pngs(tmp_path / "data" / name, 2, value)
    ascii_locale = {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    result = run_zoo("train", "dataset=image_folder", f"dataset.path={tmp_path / 'data'}", f"hydra.run.dir={tmp_path / 'run'}",
                     cwd=tmp_path, env=ascii_locale, timeout=120)  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = error_lines(result.stderr)
    assert line.endswith("Python reads file names as ascii under this locale; run with PYTHONUTF8=1 (or LC_ALL=C.UTF-8)"), line
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_run_given_a_relative_data_folder_is_evaluated_on_that_folder_from_anywhere(tmp_path):
    """`zoo evaluate RUN` started one folder over read `dataset.path=images` from there:
    other images under the same name (their classes swapped here) scored 0.0 with exit 0."""
    for name, value in (("dark", 30), ("light", 220)):
        write_pngs(tmp_path / "project" / "images" / name, 12, value)
        write_pngs(tmp_path / "elsewhere" / "images" / ("light" if name == "dark" else "dark"), 12, value)
    run_dir = tmp_path / "run"
    trained = run_zoo("train", "model=cnn_classifier", "dataset=image_folder", "dataset.path=images", "dataset.image_size=[16,16]",
                      "trainer.epochs=8", "trainer.batch_size=4", f"hydra.run.dir={run_dir}", cwd=tmp_path / "project", timeout=300)  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-2000:]
    recorded = json.loads((run_dir / "metrics.json").read_text())
    assert recorded["accuracy"] == 1.0
    evaluated = run_zoo("evaluate", str(run_dir), cwd=tmp_path / "elsewhere", timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert "accuracy     1.0000" in evaluated.stdout, evaluated.stdout
    # Continued from there, the same words name other data: refused, not trained on.
    again = run_zoo("train", "model=cnn_classifier", "dataset=image_folder", "dataset.path=images", "dataset.image_size=[16,16]",
                    "trainer.epochs=9", "trainer.batch_size=4", f"hydra.run.dir={run_dir}", cwd=tmp_path / "elsewhere", timeout=120)  # fmt: skip
    assert again.returncode == 2
    [line] = error_lines(again.stderr)
    assert f"holds a run with dataset.path='{tmp_path / 'project' / 'images'}', not '{tmp_path / 'elsewhere' / 'images'}'" in line


def test_image_folder_explains_a_folder_without_classes(tmp_path):
    write_pngs(tmp_path / "only", 2, 0)
    with pytest.raises(zoo.ZooError, match="1 class folder.*needs one sub-folder per class"):
        zoo.create_dataset("image_folder", path=str(tmp_path))
    with pytest.raises(zoo.ZooError, match="is not a folder"):
        zoo.create_dataset("image_folder", path=str(tmp_path / "missing"))


def test_image_folder_refuses_a_class_without_images(tmp_path):
    write_pngs(tmp_path / "cat", 3, 0)
    (tmp_path / "dog").mkdir()
    with pytest.raises(zoo.ZooError, match=r"class folder .*dog is empty; add images, or remove the folder"):
        zoo.create_dataset("image_folder", path=str(tmp_path))  # described: before TensorFlow
    (tmp_path / "dog" / "photo.jpg").write_bytes(b"not a picture")
    data = zoo.create_dataset("image_folder", path=str(tmp_path), cache="off")
    with pytest.raises(zoo.ZooError, match=r"class folder .*dog has no readable images"):
        data.load(seed=0)


def test_copies_of_training_images_in_the_held_out_splits_or_in_two_classes_are_said_and_listed(tmp_path):
    """A photo saved twice (a scraped set's repeats) is scored as unseen when one copy is in
    the test split, and taught under two labels when in two class folders: both had passed
    unsaid, the test metrics above what new pictures get."""
    import shutil

    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        for i in range(20):
            Image.fromarray((rng.random((12, 12, 3)) * 255).astype(np.uint8)).save(tmp_path / name / f"{i}.png")
    data = zoo.create_dataset("image_folder", path=str(tmp_path), image_size=[8, 8], cache="off")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # distinct pictures: nothing to say
        assert "test_copies_of_training_images" not in data.load(seed=0).report
    for i in range(10):
        shutil.copyfile(tmp_path / "cat" / f"{i}.png", tmp_path / "cat" / f"copy{i}.png")
    shutil.copyfile(tmp_path / "dog" / "0.png", tmp_path / "cat" / "not_a_cat.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        splits = data.load(seed=0)
    said = [str(w.message) for w in caught if issubclass(w.category, InputWarning)]
    report = splits.report
    held = {split: {os.fsdecode(p) for p in ids} for split, ids in splits.ids.items()}
    for split in ("validation", "test"):
        pairs = report.get(f"{split}_copies_of_training_images", [])
        assert all(a in held[split] and b in held["train"] and Path(a).read_bytes() == Path(b).read_bytes() for a, b in pairs)
        assert bool(pairs) == any(f"of the {split} split's" in line for line in said)
    listed = [set(pair) for key in ("validation_copies_of_training_images", "test_copies_of_training_images",
                                    "training_images_in_two_classes") for pair in report.get(key, [])]  # fmt: skip
    def said_of(a: str, b: str, classes: int) -> bool:  # copies of one class: one trained on, one held out
        trained = (str(tmp_path / a) in held["train"]) + (str(tmp_path / b) in held["train"])
        return trained == 1 or (classes == 2 and trained == 2)

    copies = [(f"cat/{i}.png", f"cat/copy{i}.png", 1) for i in range(10)] + [("dog/0.png", "cat/not_a_cat.png", 2)]
    expected = [{str(tmp_path / a), str(tmp_path / b)} for a, b, classes in copies if said_of(a, b, classes)]
    assert expected and sorted(map(sorted, listed)) == sorted(map(sorted, expected))


def test_a_class_too_small_for_the_splits_made_from_it_is_refused_or_said(tmp_path):
    """One photo of a class, and the zoo splitting validation and test off the folder: the
    photo went to the test split, the run trained without a word, the class never seen and
    scored as never predicted. Too few for every split: the validation split said."""
    write_pngs(tmp_path / "one" / "cat", 40, 30)
    write_pngs(tmp_path / "one" / "dog", 1, 220)
    data = zoo.create_dataset("image_folder", path=str(tmp_path / "one"), image_size=[8, 8], cache="off")
    refused = 0
    for seed in range(8):  # the seed decides where the one dog goes: in training, or refused
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", InputWarning)  # none of it to validate on, said as the next case shows
                splits = data.load(seed=seed)
        except zoo.ZooError as exc:
            assert re.fullmatch(r"class 'dog' has 1 readable image, all split off for validation and test \(dataset.validation_fraction, "
                                r"dataset.test_fraction\): training would never see it; add images to .*one/dog, or remove the folder "
                                r"to drop the class", str(exc)), exc  # fmt: skip
            refused += 1
        else:
            assert sum(int(label) for _, label in splits.train) == 1
    assert refused
    write_pngs(tmp_path / "three" / "cat", 40, 30)
    write_pngs(tmp_path / "three" / "dog", 3, 220)
    data = zoo.create_dataset("image_folder", path=str(tmp_path / "three"), image_size=[8, 8], cache="off")
    with pytest.warns(InputWarning, match=r"the validation split made from .*three holds no image of class 'dog' \(too few"):
        splits = data.load(seed=0)
    assert sum(int(label) for _, label in splits.train) == 3  # every dog trains


@pytest.mark.parametrize("args", [[], ["-m", "seed=1,2"], ["hydra.run.dir=cat/run"]])
def test_a_run_is_not_written_into_the_data_it_reads(args, tmp_path):
    """``zoo train dataset.path=.`` started in an image folder: Hydra made ``runs/`` there
    first, and the run stopped on "class folder runs has no readable images; ... remove the
    folder" (a later run's would hold its plots: a class of PNGs)."""
    write_pngs(tmp_path / "cat", 3, 0)
    write_pngs(tmp_path / "dog", 3, 200)
    result = run_zoo("train", *args, "dataset=image_folder", "dataset.path=.", "model=mlp_classifier", cwd=tmp_path, timeout=60)
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = error_lines(result.stderr)
    assert f"would be inside dataset.path={tmp_path}, the data it reads" in line and "a folder outside it" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cat", "dog"] and len(list((tmp_path / "cat").iterdir())) == 3


def test_a_folder_too_small_to_split_is_refused_and_a_tiny_one_splits(tmp_path):
    """scikit-learn's stratified split fails on a few images (a traceback-like 'sklearn failed'
    line): too few for every split is one line naming the fix; a few more split plainly."""
    write_pngs(tmp_path / "cat", 1, 0)
    write_pngs(tmp_path / "dog", 1, 200)
    data = zoo.create_dataset("image_folder", path=str(tmp_path), image_size=[8, 8], cache="off")
    with pytest.raises(zoo.ZooError, match="2 readable training images are too few to split off a validation share of 0.15; add images"):
        data.load(seed=0)
    write_pngs(tmp_path / "cat", 2, 0)
    write_pngs(tmp_path / "dog", 2, 200)  # 4 images: one for test, one for validation, two to train on
    with pytest.warns(InputWarning, match="holds no image of class"):  # one class has none to validate on
        splits = zoo.create_dataset("image_folder", path=str(tmp_path), image_size=[8, 8], cache="off").load(seed=0)
    assert splits.report["images"] == {"train": 2, "validation": 1, "test": 1}


def test_image_folder_cache_file_decodes_once(tmp_path):
    overrides = image_folder.write_example_folder(tmp_path / "data")
    cache = tmp_path / "cache" / "images"  # its folder is made (TensorFlow failed on its lock file there)
    data = zoo.create_dataset("image_folder", **{**overrides, "cache": str(cache)})
    first = [x.numpy() for x, _ in data.load(seed=0).train]
    assert list(cache.parent.glob("images_train*")), "the decoded training images were cached to disk"
    again = [x.numpy() for x, _ in data.load(seed=0).train]
    np.testing.assert_array_equal(np.stack(first), np.stack(again))

    # Another size, or an image replaced: new cache files, never the stale images
    # (TensorFlow reads whatever cache file it is named).
    smaller = zoo.create_dataset("image_folder", **{**overrides, "cache": str(cache), "image_size": [8, 8]})
    assert next(iter(smaller.load(seed=0).train))[0].shape[:2] == (8, 8)
    replaced = sorted(Path(overrides["path"]).rglob("*.png"))[0]
    from PIL import Image

    def every_image():
        splits = data.load(seed=0)
        return np.stack([x.numpy() for split in (splits.train, splits.validation, splits.test) for x, _ in split])

    before = every_image()
    Image.new("RGB", (40, 40), (255, 255, 255)).save(replaced)
    after = every_image()
    assert (after == 1.0).all(axis=(1, 2, 3)).sum() == 1 and not (before == 1.0).all(axis=(1, 2, 3)).any()
    (tmp_path / "afile").write_text("mine")
    with pytest.raises(zoo.ZooError, match=r"cannot write in .*afile \(Not a directory\); give dataset.cache a folder you can write"):
        zoo.create_dataset("image_folder", **{**overrides, "cache": str(tmp_path / "afile" / "images")}).load(seed=0)


@pytest.mark.parametrize("url", ["gs://bucket/images", "s3://bucket/images", "hdfs://host:9000/images", "ram://images"])
def test_an_image_cache_named_by_a_url_is_refused_before_anything_is_made(url, tmp_path, monkeypatch):
    """TensorFlow reads a URL through its network file systems: gs:// had the run make an HTTP
    request (failing as "tensorflow failed: ... Could not resolve host: www.googleapis.com") after
    making a folder named "gs:" in the working folder; ram:// kept the cache in memory, unsaid."""
    from zoo.config import compose, plan_run

    overrides = image_folder.write_example_folder(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(zoo.ZooError, match=rf"^dataset.cache={re.escape(url)} is a URL; the cache is files on this machine: give a path"):
        plan_run(compose(["dataset=image_folder", f"dataset.path={overrides['path']}", f"dataset.cache={url}"]))
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


@pytest.mark.parametrize("prefix", ["caf\udce9/images", "~/images"])
def test_an_image_cache_whose_name_is_not_utf8_is_refused_before_anything_is_made(prefix, tmp_path, monkeypatch):
    """TensorFlow's cache (and the reader its files are checked with) encode names as UTF-8: a
    prefix in a folder named on a Latin-1 machine failed the run on "tensorflow failed:
    ValueError: Error converting unicode string while converting Python sequence to Tensor"."""
    from zoo.config import compose, plan_run

    overrides = image_folder.write_example_folder(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "caf\udce9"))  # ~ expanded: the name TensorFlow is given
    with pytest.raises(zoo.ZooError, match=r"^dataset.cache=\S*: TensorFlow takes only file names in UTF-8 text; give a prefix"):
        plan_run(compose(["dataset=image_folder", f"dataset.path={overrides['path']}", f"dataset.cache='{prefix}'"]))
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


@pytest.mark.parametrize("layout", ["one split", "train and validation"])
def test_one_class_name_in_two_unicode_spellings_is_refused_showing_the_difference(layout, tmp_path):
    """"café" as é, and as e and a combining accent (as macOS writes names): two classes whose
    names printed alike, or "validation has class folder 'café' that train lacks"."""
    import unicodedata

    from PIL import Image

    composed, decomposed = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    folders = [composed, decomposed, "dog"] if layout == "one split" else [
        f"train/{composed}", "train/dog", f"validation/{decomposed}", "validation/dog"]  # fmt: skip
    for folder in folders:
        (tmp_path / "data" / folder).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / "data" / folder / f"{i}.png")
    config = image_folder.ImageFolderConfig(path=str(tmp_path / "data"), image_size=[8, 8])
    with pytest.raises(zoo.ZooError, match="spell one name in two ways of writing Unicode") as refused:
        image_folder.class_names(config)
    assert "caf\\xe9'" in str(refused.value) and "cafe\\u0301'" in str(refused.value)  # the difference shown


def test_a_long_pass_over_the_images_says_how_far_it_has_got(tmp_path, monkeypatch, capsys):
    """Checking a folder of a million images (each decoded once) and writing its cache had kept
    the terminal silent for a quarter of an hour. Here each image "takes" 7 s: the first 10 s say
    nothing, then a line a minute where the output is no terminal (a log, a batch job's)."""
    import time

    overrides = image_folder.write_example_folder(tmp_path / "da\x1b[2Jta")  # a name that would clear the screen
    clock = iter(range(0, 10**6, 7))
    monkeypatch.setattr(time, "monotonic", lambda: next(clock))
    names = image_folder.class_names(image_folder.ImageFolderConfig(**overrides))
    paths, _, skipped, _ = image_folder.list_images(Path(overrides["path"]), names)
    lines = capsys.readouterr().err.splitlines()
    total = len(paths) + len(skipped)  # every file is checked
    assert total > 20 and 1 <= len(lines) <= total * 7 // 60 + 1, lines
    shown = overrides["path"].replace("\x1b", "\\x1b")  # escaped, never sent to the terminal as is
    assert all(re.fullmatch(rf"checking that the images of {re.escape(shown)} decode: [\d,]+ of {total:,} \(\d+%\)", line) for line in lines), lines


def test_a_damaged_cache_file_is_written_again_or_named_with_the_fix(tmp_path, caplog):
    """A cache cut short (a full disk, a machine that stopped), its index damaged, or its
    bytes changed: read as it was, training failed part-way in TensorFlow's words ("Iterator
    ... returned OutOfRange. This indicates an implementation error", "not an sstable",
    "Checksum does not match")."""
    from zoo.run import input_failures_in_one_line

    overrides = image_folder.write_example_folder(tmp_path / "data")
    cache = tmp_path / "cache" / "images"
    data = zoo.create_dataset("image_folder", **{**overrides, "cache": str(cache)})
    whole = np.stack([x.numpy() for x, _ in data.load(seed=0).train])
    [index] = cache.parent.glob("images_train_*.index")
    [stored] = cache.parent.glob("images_train_*.data-*")
    original = stored.read_bytes()
    for damage in (lambda: stored.write_bytes(original[: len(original) // 2]), lambda: index.write_bytes(b"not an index")):
        damage()
        caplog.clear()
        again = np.stack([x.numpy() for x, _ in data.load(seed=0).train])
        np.testing.assert_array_equal(again, whole)
        assert re.search(r"dataset.cache: .*images_train_\w+\.\* is damaged \((its data files hold \d[\d,]* bytes, where its index "
                         r"lists [\d,]+|its index cannot be read: .*)\); writing it again", caplog.text), caplog.text  # fmt: skip
    stored.write_bytes(stored.read_bytes()[:100] + bytes(byte ^ 0xFF for byte in stored.read_bytes()[100:200]) + stored.read_bytes()[200:])
    with pytest.raises(zoo.ZooError, match=rf"^the cache {re.escape(str(stored).split('.data-')[0])}\.\* is damaged \(Checksum does not "
                                           r"match\); no checkpoint was written yet: delete .*\.\* \(the next run writes it again\)"):  # fmt: skip
        with input_failures_in_one_line(tmp_path):
            [x.numpy() for x, _ in data.load(seed=0).train]


def test_a_cache_file_is_shared_by_runs_at_once_and_left_whole_by_a_killed_one(tmp_path):
    """TensorFlow writes a cache file as the first epoch reads, and fails another reader of
    it meanwhile: two runs sharing dataset.cache (a sweep's jobs) had failed one of them
    mid-training, and a run killed while writing left a lock file that failed every attempt
    to continue it ("There appears to be a concurrent caching iterator running")."""
    import threading

    overrides = image_folder.write_example_folder(tmp_path / "data")
    cache = tmp_path / "cache" / "images"
    data = zoo.create_dataset("image_folder", **{**overrides, "cache": str(cache)})
    read, failures = [], []

    def train_epoch():
        try:
            read.append(np.stack([x.numpy() for x, _ in data.load(seed=0).train]))
        except Exception as exc:  # noqa: BLE001 - the failure is the finding
            failures.append(exc)

    runs = [threading.Thread(target=train_epoch) for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    assert failures == [] and len(read) == 2
    np.testing.assert_array_equal(read[0], read[1])
    # What a writer killed part way leaves: TensorFlow's lock file and a partial data file.
    [index] = cache.parent.glob("images_train_*.index")
    written = index.with_suffix("")
    for part in cache.parent.glob(f"{written.name}.*"):
        if part.suffix != ".lock":
            part.unlink()
    (cache.parent / f"{written.name}_0.lockfile").write_text("")
    (cache.parent / f"{written.name}_0.data-00000-of-00001.tempstate123").write_text("part")
    np.testing.assert_array_equal(np.stack([x.numpy() for x, _ in data.load(seed=0).train]), read[0])
    assert not list(cache.parent.glob("*lockfile")) and not list(cache.parent.glob("*tempstate*"))


def test_cifar10_archive_members_that_escape_the_folder_are_never_written(tmp_path):
    """The archive is read in memory, member by member, and never extracted: a member named
    to land outside any target folder (or a link) cannot write anything."""
    overrides = cifar10.write_example_archive(tmp_path / "clean")
    hostile = tmp_path / "data" / "hostile.tar.gz"
    hostile.parent.mkdir()
    with tarfile.open(overrides["path"]) as clean, tarfile.open(hostile, "w:gz") as archive:
        for member in clean.getmembers():
            archive.addfile(member, clean.extractfile(member))
        for name in ("../../escaped.txt", "/tmp/absolute-escape.txt"):
            info = tarfile.TarInfo(name)
            info.size = 4
            archive.addfile(info, io.BytesIO(b"evil"))
        link = tarfile.TarInfo(f"{cifar10.FOLDER}/link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    before = {p for p in tmp_path.rglob("*")}
    splits = zoo.create_dataset("cifar10", path=str(hostile)).load(seed=0)
    assert len(splits.test[0]) == 40
    assert {p for p in tmp_path.rglob("*")} == before
    assert not (tmp_path.parent / "escaped.txt").exists()


def test_many_unreadable_files_are_summarised_on_the_terminal_and_all_listed_in_data_json(tmp_path):
    for name, value in (("a", 30), ("b", 220)):
        write_pngs(tmp_path / "data" / name, 6, value)
    for i in range(20):
        (tmp_path / "data" / "ab"[i % 2] / f"broken{i}.jpg").write_bytes(b"not a picture")
    run_dir = tmp_path / "run"
    result = run_zoo(
        "train", "model=mlp_classifier", "dataset=image_folder", f"dataset.path={tmp_path / 'data'}", "dataset.image_size=[8,8]",
        "dataset.cache=off", "trainer.epochs=1", "metrics=[accuracy]", "loggers=none", f"hydra.run.dir={run_dir}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    terminal = (result.stdout + result.stderr).splitlines()
    assert len([line for line in terminal if "skipped /" in line]) == 5
    assert any("skipped 15 more files (all listed in" in line for line in terminal)
    assert len(json.loads((run_dir / "data.json").read_text())["skipped"]) == 20


@pytest.mark.slow  # the default suite stays near 15 minutes
def test_a_finished_runs_cache_file_is_not_written_where_its_config_says(tmp_path):
    """`zoo evaluate` of a run from elsewhere wrote TensorFlow cache files wherever its
    config.yaml's dataset.cache pointed: commands over a finished run cache nothing (a run
    cached in files had data larger than memory), unless given dataset.cache themselves."""
    for name, value in (("a", 30), ("b", 220)):
        write_pngs(tmp_path / "data" / name, 8, value)
    run_dir, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    trained = run_zoo(
        "train", "model=mlp_classifier", "dataset=image_folder", f"dataset.path={tmp_path / 'data'}", "dataset.image_size=[8,8]",
        f"dataset.cache={elsewhere / 'c'}", "trainer.epochs=1", "metrics=[accuracy]", "loggers=none", f"hydra.run.dir={run_dir}", cwd=tmp_path,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert any(elsewhere.iterdir())  # training caches where it was told
    for path in elsewhere.iterdir():
        path.unlink()
    assert run_zoo("evaluate", str(run_dir), cwd=tmp_path).returncode == 0
    assert not any(elsewhere.iterdir())
    asked = run_zoo("evaluate", str(run_dir), f"dataset.cache={tmp_path / 'mine' / 'c'}", cwd=tmp_path)
    assert asked.returncode == 0 and any((tmp_path / "mine").iterdir()), asked.stderr[-2000:]


def test_data_that_would_outgrow_memory_is_refused_before_it_is_read(tmp_path, monkeypatch):
    """Settings that multiply a small input (overlapping text windows, decoded images kept in
    memory) had the kernel kill the run with nothing said, minutes in. The machine's memory
    is made small here; the data, the loading and the refusal are real."""
    import zoo.config

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 120, encoding="utf-8")  # 5,400 characters
    for name, value in (("a", 30), ("b", 220)):
        write_pngs(tmp_path / "images" / name, 10, value)
    monkeypatch.setattr(zoo.config, "physical_memory", lambda: 4_000_000)
    # A window every character copies each one 64 times: about 5 MB of windows.
    with pytest.raises(zoo.ZooError, match=r"^4,8\d\d windows of dataset.sequence_length=64 characters, one every dataset.step=1: .* MB, "
                       r"more than half of the 3.8 MB of memory this process may use; raise dataset.step"):  # fmt: skip
        zoo.create_dataset("text", path=str(corpus), step=1).load(seed=0)
    x, _ = zoo.create_dataset("text", path=str(corpus), step=32).load(seed=0).train
    assert x.shape[1] == 64
    # max_characters far beyond the file ("no limit") reads the file, where Python had
    # failed allocating for that many characters.
    limitless = zoo.create_dataset("text", path=str(corpus), max_characters=10**12).load(seed=0)
    assert limitless.report["characters"] == 5_400

    # 20 images of 100 x 100 x 3 bytes: 600 KB, past half of 1 MB.
    monkeypatch.setattr(zoo.config, "physical_memory", lambda: 1_000_000)
    folder = {"path": str(tmp_path / "images"), "image_size": [100, 100]}
    with pytest.raises(zoo.ZooError, match=r"^dataset.cache=memory keeping 20 images of 100x100x3 bytes: 585.9 KB, .*; give dataset.cache=PREFIX"):
        zoo.create_dataset("image_folder", **folder).load(seed=0)
    for cache in ("off", str(tmp_path / "cache" / "c")):
        splits = zoo.create_dataset("image_folder", **folder, cache=cache).load(seed=0)
        assert sum(1 for _ in splits.train) == splits.report["images"]["train"]


@pytest.mark.parametrize(
    "groups, files, limits",
    [
        # cgroup v1 (SLURM and Docker on older systems): a job's limit is on its group, above its step's
        ("4:memory:/slurm/uid_0/job_7/step_0\n", {"memory/slurm/uid_0/job_7/memory.limit_in_bytes": "3221225472",
                                                   "memory/memory.limit_in_bytes": "9223372036854771712"}, [3221225472, 9223372036854771712]),
        # cgroup v2 (systemd, SLURM, Kubernetes): "max" is none; the limit above counts
        ("0::/system.slice/job_7/step_0\n", {"system.slice/job_7/step_0/memory.max": "max",
                                               "system.slice/job_7/memory.max": "2147483648"}, [2147483648]),
        # a container shown the host's path of its group: its own group is the top of the mount
        ("0::/docker/abc\n", {"memory.max": "1073741824"}, [1073741824]),
        ("12:cpu,cpuacct:/x\n", {"cpu/x/memory.limit_in_bytes": "1"}, []),  # no memory controller
        ("", {}, []),
    ],
)
def test_memory_limits_of_control_groups_are_found_where_slurm_and_containers_set_them(tmp_path, groups, files, limits):
    """Only cgroup v2's top-level memory.max had been read: under SLURM or Docker with
    cgroup v1, or in a SLURM job's group of v2, the memory check saw the whole machine, and
    the kernel killed the run it had let through, with nothing said."""
    from zoo.config import cgroup_memory_limits

    (tmp_path / "proc" / "self").mkdir(parents=True)
    (tmp_path / "proc" / "self" / "cgroup").write_text(groups)
    for name, text in files.items():
        (tmp_path / "sys" / "fs" / "cgroup" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "sys" / "fs" / "cgroup" / name).write_text(text + "\n")
    assert sorted(cgroup_memory_limits(tmp_path)) == sorted(limits)


@pytest.mark.parametrize(
    "groups, files, room",
    [
        ("3:pids:/docker/abc\n", {"pids/docker/abc/pids.max": "100", "pids/docker/abc/pids.current": "40",
                                   "pids/docker/pids.max": "max", "pids/docker/pids.current": "41"}, (60, "pids.max 100 in /sys/fs/cgroup/pids/docker/abc")),
        # cgroup v2: a unit's TasksMax above the service's own group counts where it is the smaller room
        ("0::/system.slice/x.service\n", {"system.slice/x.service/pids.max": "500", "system.slice/x.service/pids.current": "10",
                                           "system.slice/pids.max": "50", "system.slice/pids.current": "45"}, (5, "pids.max 50 in /sys/fs/cgroup/system.slice")),
        ("0::/\n", {"pids.max": "max", "pids.current": "7"}, None),
        ("3:cpu:/x\n", {"cpu/x/pids.max": "1", "cpu/x/pids.current": "1"}, None),
    ],
)  # fmt: skip
def test_caps_on_tasks_of_control_groups_are_found(tmp_path, groups, files, room):
    from zoo.limits import cgroup_task_room

    (tmp_path / "proc" / "self").mkdir(parents=True)
    (tmp_path / "proc" / "self" / "cgroup").write_text(groups)
    for name, text in files.items():
        (tmp_path / "sys" / "fs" / "cgroup" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "sys" / "fs" / "cgroup" / name).write_text(text + "\n")
    assert cgroup_task_room(tmp_path) == room


def test_a_pipe_or_a_folder_where_a_data_file_belongs_is_refused_without_waiting(tmp_path):
    """Opening a named pipe waits for a writer for ever: every path the zoo reads from a
    config or a run is checked to be a file (or a folder where one is allowed) first."""
    import os
    import threading

    from zoo import artifacts

    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    cases = [
        (lambda: zoo.create_dataset("text", path=str(pipe)).load(seed=0), "not a regular file (a pipe or a device)"),
        (lambda: zoo.create_dataset("text", path=str(tmp_path)).load(seed=0), ": a folder; give a UTF-8 text file"),
        (lambda: zoo.create_dataset("cifar10", path=str(pipe)).load(seed=0), "is not a regular file or a folder"),
        (lambda: artifacts.read_json(pipe), "is not a regular file (a pipe, socket or device)"),
        (lambda: artifacts.read_yaml(pipe), "is not a regular file (a pipe, socket or device)"),
    ]
    for call, problem in cases:
        raised = []

        def attempt(call=call):
            try:
                call()
            except zoo.ZooError as exc:
                raised.append(str(exc))

        worker = threading.Thread(target=attempt, daemon=True)  # a regression would hang here, not the suite
        worker.start()
        worker.join(timeout=30)
        assert not worker.is_alive(), f"still waiting on the pipe: {problem}"
        assert raised and problem in raised[0] and "\n" not in raised[0], raised


def test_files_that_change_under_a_run_and_a_full_cache_disk_are_one_line_each(tmp_path):
    """An image deleted or overwritten after the folder was scanned failed the run with
    TensorFlow's graph error, its path cut off; a full disk under dataset.cache's file was
    called "out of memory". Each now says what happened and how the run continues."""
    import resource
    import subprocess
    import sys

    from zoo.run import input_failures_in_one_line

    overrides = image_folder.write_example_folder(tmp_path / "data")
    splits = zoo.create_dataset("image_folder", **{**overrides, "cache": "off"}).load(seed=0)
    images = sorted(Path(overrides["path"]).rglob("*.png"))
    images[0].unlink()
    with pytest.raises(zoo.ZooError) as gone:
        with input_failures_in_one_line(tmp_path / "run"):
            for split in (splits.train, splits.validation, splits.test):
                list(split)
    assert str(gone.value).startswith(f"{images[0]} was deleted while the run read its dataset (its files must stay")
    assert str(gone.value).endswith("no checkpoint was written yet: put the files back, then run the same command to start it again")
    images[1].write_text("not an image any more")
    with pytest.raises(zoo.ZooError, match="an image was overwritten with something that is not an image while the run"):
        with input_failures_in_one_line(tmp_path / "run"):
            for split in (splits.train, splits.validation, splits.test):
                list(split)

    write_pngs(tmp_path / "big" / "a", 40, 30)
    write_pngs(tmp_path / "big" / "b", 40, 220)
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "zoo", "train", "model=mlp_classifier", "dataset=image_folder", f"dataset.path={tmp_path / 'big'}",
         "dataset.image_size=[32,32]", f"dataset.cache={tmp_path / 'cache' / 'c'}", "trainer.epochs=1", "loggers=none",
         f"hydra.run.dir={run_dir}"],
        capture_output=True, text=True, cwd=tmp_path, stdin=subprocess.DEVNULL, timeout=300,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000)),  # the cache: about 170 KB
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    [line] = [line for line in result.stderr.splitlines() if line.startswith("zoo: error:")]
    assert line.startswith(f"zoo: error: could not write {tmp_path / 'cache' / 'c'}_train_") and "(File too large); " in line, line


@pytest.mark.parametrize(
    "settings,expected",
    [
        ({"validation_fraction": 0.0001}, "the validation split holds 1 of the text's 5,400 characters, less than one window of "
                                           "dataset.sequence_length=64; raise dataset.validation_fraction to 0.013 or more"),
        ({"test_fraction": 0.0001}, "raise dataset.test_fraction to 0.013 or more"),
        ({"validation_fraction": 0.5, "test_fraction": 0.49}, "the train split holds 54 of the text's 5,400 characters"),
        ({"sequence_length": 600}, "the validation split holds 271 of the text's 5,400 characters, less than one window of "
                                   "dataset.sequence_length=600; raise dataset.validation_fraction to 0.112 or more, or lower"),
    ],
)  # fmt: skip
def test_a_text_split_too_short_for_a_window_names_the_setting_to_change(settings, expected, tmp_path):
    """It had said "a split of 1 characters is shorter than dataset.sequence_length=64; use a
    longer text", of a validation fraction set too small."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 120, encoding="utf-8")  # 5,400 characters
    with pytest.raises(zoo.ZooError) as info:
        zoo.create_dataset("text", path=str(corpus), **settings).load(seed=0)
    assert expected in str(info.value)
