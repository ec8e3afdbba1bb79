"""The pretrained classifier: every listed backbone exists in keras.applications, weights
from a file load where they belong, freezing trains what it should, and the two-phase
fine-tune presets chain from the command line. No test downloads anything."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import zoo
from zoo_plugins.pretrained import BACKBONES

from conftest import error_lines, run_zoo

CATS = zoo.DataSpec("classification", (40, 40, 3), 2, ("not_cat", "cat"), value_range=(0.0, 1.0))


def test_every_listed_backbone_is_a_keras_application():
    import keras

    for name, (class_name, mode) in BACKBONES.items():
        assert callable(getattr(keras.applications, class_name, None)), name
        assert mode in ("raw", "tf", "torch", "caffe")


def backbone_of(model):
    import keras

    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


def test_weights_come_from_the_file_given(tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    first = zoo.create_model("pretrained_classifier", CATS, weights="none", image_size=32)
    path = tmp_path / "backbone.weights.h5"
    backbone_of(first).save_weights(path)
    keras.utils.set_random_seed(1)
    loaded = zoo.create_model("pretrained_classifier", CATS, weights=str(path), image_size=32)
    keras.utils.set_random_seed(1)
    random = zoo.create_model("pretrained_classifier", CATS, weights="none", image_size=32)
    for a, b, c in zip(backbone_of(first).get_weights(), backbone_of(loaded).get_weights(), backbone_of(random).get_weights()):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, c) for a, c in zip(backbone_of(first).get_weights(), backbone_of(random).get_weights()))
    with pytest.raises(zoo.ZooError, match="neither imagenet, none, nor an existing weights file"):
        zoo.create_model("pretrained_classifier", CATS, weights=str(tmp_path / "missing.h5"))


def test_freezing_trains_the_head_and_the_layers_asked_for():
    import keras

    head_only = zoo.create_model("pretrained_classifier", CATS, weights="none", image_size=32)
    assert {w.path.split("/")[0] for w in head_only.trainable_weights} == {"probability"}
    top = zoo.create_model("pretrained_classifier", CATS, weights="none", image_size=32, fine_tune_layers=6)
    backbone = backbone_of(top)
    trained = [layer for layer in backbone.layers if layer.trainable_weights]
    weighted = [layer for layer in backbone.layers if layer.weights]
    assert trained and all(layer in weighted[-6:] for layer in trained)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in trained)
    everything = zoo.create_model("pretrained_classifier", CATS, weights="none", image_size=32, freeze_backbone=False)
    assert len(everything.trainable_weights) > len(top.trainable_weights) > len(head_only.trainable_weights)


@pytest.mark.parametrize("mode", ["raw", "tf", "torch", "caffe"])
def test_inputs_are_preprocessed_as_keras_applications_preprocess_them(mode):
    from keras.applications import imagenet_utils

    from zoo_plugins.pretrained import preprocessing_layer

    images = np.random.default_rng(0).uniform(size=(2, 4, 4, 3)).astype("float32")  # the zoo's [0, 1]
    expected = images * 255 if mode == "raw" else imagenet_utils.preprocess_input(images * 255, mode=mode)
    np.testing.assert_allclose(np.asarray(preprocessing_layer()(mode)(images)), expected, rtol=1e-5, atol=1e-4)
    gray = np.asarray(preprocessing_layer()(mode)(images[..., :1]))  # grayscale: the channel thrice
    np.testing.assert_allclose(gray, np.asarray(preprocessing_layer()(mode)(np.repeat(images[..., :1], 3, axis=-1))))


TINY_CATS = ["dataset.image_size=32", "dataset.num_images=48", "model.weights=none", "model.image_size=32",
             "trainer.epochs=1", "trainer.batch_size=8", "trainer.progress=off"]  # fmt: skip


@pytest.mark.slow
def test_the_two_phase_fine_tune_presets_chain(tmp_path):
    head = run_zoo("train", "+experiment=cats_pretrained_head", *TINY_CATS, cwd=tmp_path)
    assert head.returncode == 0, head.stderr[-3000:]
    tuned = run_zoo("train", "+experiment=cats_pretrained_finetune", *TINY_CATS, cwd=tmp_path)
    assert tuned.returncode == 0, tuned.stderr[-3000:]
    record = json.loads((tmp_path / "runs/cats_pretrained_finetune/seed_0/training.json").read_text())
    assert record["init_from"]["unmatched"] == []  # every layer, backbone and head, from phase 1
    assert (tmp_path / "runs/cats_pretrained_finetune/seed_0/metrics.json").is_file()


def test_missing_imagenet_weights_say_which_file_to_put_where(tmp_path):
    # Offline as a machine without network is: every download goes to a closed local port.
    offline = {"KERAS_HOME": str(tmp_path / "keras"), "https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    result = run_zoo(
        "train", "model=pretrained_classifier", "dataset=synthetic_cats", "dataset.image_size=32", "dataset.num_images=48",
        f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, env={**offline, "no_proxy": ""},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = error_lines(result.stderr)
    assert "could not download weights_mobilenet_v3_small" in line
    assert f"put that file in {tmp_path / 'keras' / 'models'}" in line
    assert "Traceback" not in result.stderr
    assert not os.listdir(tmp_path / "keras" / "models") if (tmp_path / "keras" / "models").exists() else True


@pytest.fixture
def silent_server(monkeypatch):
    """A server (or proxy) that takes connections and then sends nothing, or stops after
    ``sent`` bytes of a body it says is longer; downloads meanwhile give up after 2 s."""
    import socket
    import threading
    import urllib.request

    import zoo.artifacts

    listener = socket.create_server(("127.0.0.1", 0))
    held, sent = [], []

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            held.append(connection)
            if sent:  # an HTTP answer that stops half-way
                connection.recv(65536)
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * sent[0])

    threading.Thread(target=serve, daemon=True).start()
    monkeypatch.setattr(zoo.artifacts, "DOWNLOAD_SILENCE_S", 2.0)
    monkeypatch.setattr(urllib.request, "_opener", None)  # urllib reads the proxy settings into its first opener
    yield f"127.0.0.1:{listener.getsockname()[1]}", sent
    listener.close()
    for connection in held:
        connection.close()


def test_a_download_that_stays_silent_is_given_up_in_one_line(silent_server, tmp_path, monkeypatch):
    """A proxy or server that took the connection and said nothing had kept the run waiting
    for ever, silent (`zoo train model=pretrained_classifier` behind a proxy that answered
    nothing; a CIFAR-10 download that stopped half-way)."""
    import time

    from zoo_plugins import cifar10
    from zoo_plugins.pretrained import PretrainedClassifierConfig, load_backbone

    address, sent = silent_server
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, f"http://{address}")
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.setenv("no_proxy", "")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    started = time.monotonic()
    with pytest.raises(zoo.ZooError) as info:
        load_backbone(PretrainedClassifierConfig(backbone="mobilenet_v3_small"), (32, 32, 3))
    assert "Keras could not download weights_mobilenet_v3_small" in str(info.value) and "(nothing came for 2 s;" in str(info.value)
    assert time.monotonic() - started < 30

    sent.append(1000)  # the archive's first kilobyte, then nothing
    monkeypatch.setattr(cifar10, "URL", f"http://{address}/cifar-10-python.tar.gz")
    monkeypatch.setenv("ZOO_DATA_DIR", str(tmp_path / "none"))
    with pytest.raises(zoo.ZooError, match=r"could not download CIFAR-10 from .* \(nothing came for 2 s\); download it elsewhere"):
        cifar10.locate(cifar10.Cifar10Config(download=True))
    assert not list((tmp_path / "keras").rglob("*.tar.gz"))  # the part downloaded is not kept


@pytest.mark.slow
def test_a_finished_run_is_used_without_the_weights_its_training_started_from(tmp_path):
    """A run trained from a backbone weights file (or ImageNet's download) and then copied
    to another machine: evaluate, predict, export and a warm start each failed on that file,
    although the run's own weights replace it at once."""
    from PIL import Image

    start = tmp_path / "backbone.weights.h5"
    backbone_of(zoo.create_model("pretrained_classifier", CATS, weights="none", image_size=32)).save_weights(start)
    run_dir = tmp_path / "run"
    tiny = [o for o in TINY_CATS if not o.startswith("model.weights=")]
    trained = run_zoo("train", "model=pretrained_classifier", "dataset=synthetic_cats", f"model.weights={start}", *tiny,
                      f"hydra.run.dir={run_dir}", cwd=tmp_path)  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    start.unlink()  # elsewhere now; and no network either
    offline = {"KERAS_HOME": str(tmp_path / "keras"), "https_proxy": "http://127.0.0.1:9", "no_proxy": ""}
    Image.new("RGB", (32, 32), (200, 120, 40)).save(tmp_path / "picture.png")
    for command in (["evaluate", str(run_dir)], ["predict", str(run_dir), str(tmp_path / "picture.png")],
                    ["export", str(run_dir), "--format", "keras"]):  # fmt: skip
        result = run_zoo(*command, cwd=tmp_path, env=offline)
        assert result.returncode == 0, (command, result.stderr[-2000:])
    warm = run_zoo("train", "model=pretrained_classifier", "dataset=synthetic_cats", *TINY_CATS, f"trainer.init_from={run_dir}",
                   f"hydra.run.dir={tmp_path / 'warm'}", cwd=tmp_path, env=offline)  # fmt: skip
    assert warm.returncode == 0, warm.stderr[-2000:]


def test_gradcam_weighs_the_backbones_feature_maps():
    import tensorflow as tf

    from zoo.explain import grad_cam, last_convolution

    model = zoo.create_model("pretrained_classifier", CATS, weights="none", image_size=32)
    assert last_convolution(model, None) is backbone_of(model)  # pooled outside it, so its output is spatial
    x = np.random.default_rng(0).uniform(size=(2, 40, 40, 3)).astype("float32")
    maps = grad_cam(tf, model, x, np.array([1, 0]), None)
    assert maps.shape == x.shape and (maps >= 0).all()
