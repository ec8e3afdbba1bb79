"""The cat CNN's RandomAffine: seed 004's five augmentations composed into one resampling."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")


def images(n=6, height=9, width=13):
    return np.random.default_rng(0).random((n, height, width, 3)).astype("float32")


def test_zero_ranges_leave_images_exactly_as_they_were():
    from zoo_plugins.augmentation import RandomAffine

    x = images()
    np.testing.assert_array_equal(np.asarray(RandomAffine(seed=1)(x, training=True)), x)


def test_flip_alone_mirrors_some_images_about_their_centre_and_keeps_the_rest():
    from zoo_plugins.augmentation import RandomAffine

    x = images(n=32)
    y = np.asarray(RandomAffine(flip=True, seed=1)(x, training=True))
    mirrored = [np.array_equal(y[i], x[i, :, ::-1]) for i in range(len(x))]
    kept = [np.array_equal(y[i], x[i]) for i in range(len(x))]
    assert all(m or k for m, k in zip(mirrored, kept))
    assert 4 <= sum(mirrored) <= 28


def test_a_shift_moves_pixels_and_fills_from_the_nearest_edge():
    from zoo_plugins.augmentation import RandomAffine

    x = images(n=64)
    y = np.asarray(RandomAffine(shift=0.3, seed=2)(x, training=True))
    assert y.shape == x.shape and not np.allclose(y, x)
    # Bilinear sampling with nearest-edge fill never leaves the input's range.
    assert y.min() >= x.min() - 1e-6 and y.max() <= x.max() + 1e-6


def test_only_training_augments_and_the_layer_round_trips_through_a_keras_file(tmp_path):
    from zoo_plugins.augmentation import RandomAffine

    x = images()
    layer = RandomAffine(rotation=40, shift=0.2, shear=0.2, zoom=0.2, flip=True, seed=3)
    np.testing.assert_array_equal(np.asarray(layer(x)), x)
    assert not np.allclose(np.asarray(layer(x, training=True)), x)
    model = keras.Sequential([keras.Input(x.shape[1:]), layer])
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras").layers[0]
    assert reloaded.get_config() == layer.get_config()
