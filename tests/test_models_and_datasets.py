"""Every registered model on every compatible dataset, and every dataset against its spec."""

from __future__ import annotations

import numpy as np
import pytest

import zoo

from conftest import compatible_pairs, entries, tiny_dataset


@pytest.fixture(scope="module")
def loaded():
    cache = {}

    def load(name: str, seed: int = 0):
        if (name, seed) not in cache:
            dataset = tiny_dataset(name)
            cache[name, seed] = (dataset.spec, dataset.load(seed))
        return cache[name, seed]

    return load


def arrays(split):
    """``(x, y)`` numpy arrays of a split, whichever form the dataset returned."""
    if isinstance(split, tuple):
        return np.asarray(split[0]), np.asarray(split[1])
    xs, ys = zip(*((x.numpy(), y.numpy()) for x, y in split))
    return np.stack(xs), np.stack(ys)


@pytest.mark.parametrize("entry", entries("dataset"), ids=lambda e: e.name)
def test_dataset_yields_what_it_declares(entry, loaded):
    spec, splits = loaded(entry.name)
    sizes = []
    for split in (splits.train, splits.validation, splits.test):
        x, y = arrays(split)
        assert x.shape[1:] == tuple(spec.input_shape)
        assert len(x) == len(y) > 0
        assert np.isfinite(x).all()
        if spec.task == zoo.CLASSIFICATION:
            assert set(np.unique(y)) <= set(range(spec.num_classes))
        sizes.append(len(x))
    if spec.task == zoo.CLASSIFICATION:
        assert len(spec.class_names) == spec.num_classes
        # Every class is represented in training.
        assert len(np.unique(arrays(splits.train)[1])) == spec.num_classes


@pytest.mark.parametrize("entry", entries("dataset"), ids=lambda e: e.name)
def test_dataset_splits_are_reproducible_from_the_seed(entry, loaded):
    _, first = loaded(entry.name, 0)
    again = tiny_dataset(entry.name).load(0)
    _, other = loaded(entry.name, 1)
    for split in ("train", "validation", "test"):
        np.testing.assert_array_equal(arrays(getattr(first, split))[0], arrays(getattr(again, split))[0])
    # Another seed gives other examples somewhere (held-out blocks of a text stay put).
    assert any(
        not np.array_equal(arrays(getattr(first, split))[0], arrays(getattr(other, split))[0])
        for split in ("train", "validation", "test")
    )


@pytest.mark.parametrize("model_name,dataset_name", compatible_pairs())
def test_model_trains_a_step_and_survives_save_and_load(model_name, dataset_name, loaded, tmp_path):
    import keras

    from zoo.config import plan_run, compose
    from zoo.run import loss_for

    keras.utils.set_random_seed(0)
    spec, splits = loaded(dataset_name)
    x, y = arrays(splits.train)
    x, y = x[:32], y[:32]
    objective = zoo.get_registry().get("model", model_name).item.objective
    if objective == zoo.RECONSTRUCTION:
        y = x
    model = zoo.create_model(model_name, spec)
    tiny = zoo.get_registry().get("dataset", dataset_name).item.tiny
    plan = plan_run(compose([f"model={model_name}", f"dataset={dataset_name}", *(f"dataset.{k}={v}" for k, v in tiny.items())]))
    model.compile(optimizer="adam", loss=loss_for(plan))
    before = [w.copy() for w in model.get_weights()]
    loss = model.train_on_batch(x, y)
    assert np.isfinite(loss)
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights())), "a step changed nothing"

    predictions = model.predict(x, verbose=0)
    if objective == zoo.RECONSTRUCTION:
        assert predictions.shape == x.shape
    elif spec.task == zoo.CLASSIFICATION:
        width = 1 if spec.binary else spec.num_classes
        assert predictions.shape == (len(x), width)
        assert np.all((predictions >= 0) & (predictions <= 1))

    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)  # safe mode on
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), predictions, rtol=1e-5, atol=1e-6)
