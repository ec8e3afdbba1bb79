"""Every registered model on every compatible registered dataset (the conformance checks in
tests/test_conformance.py build models for synthetic data and check each dataset alone)."""

from __future__ import annotations

import numpy as np
import pytest

import zoo

from zoo.errors import InputWarning, ZooError
from zoo.testing import split_arrays as arrays

from conftest import compatible_pairs, entries, model_overrides, tiny_dataset, tiny_overrides


@pytest.fixture(scope="module")
def loaded():
    cache = {}

    def load(name: str, seed: int = 0):
        if (name, seed) not in cache:
            dataset = tiny_dataset(name)
            cache[name, seed] = (dataset.spec, dataset.load(seed))
        return cache[name, seed]

    return load


def incompatible_pairs():
    fitting = {tuple(pair.values) for pair in compatible_pairs()}
    return [(model.name, dataset.name) for model in entries("model") for dataset in entries("dataset")
            if (model.name, dataset.name) not in fitting]  # fmt: skip


def test_the_python_api_refuses_a_model_for_data_it_cannot_learn_as_runs_do():
    """``zoo.create_model`` had built a GRU text generator for 8x8 digit images (and other
    pairs a run refuses) without a word. Every registered pair that does not fit is refused,
    in the words of the run's refusal."""
    from zoo.config import compose, plan_run

    pairs = incompatible_pairs()
    assert pairs, "every model fits every dataset: nothing to check"
    for model_name, dataset_name in pairs:
        data = tiny_dataset(dataset_name)
        overrides = {**zoo.get_registry().get("model", model_name).item.tiny}
        with pytest.raises(ZooError, match=f"^model '{model_name}' .*dataset '{dataset_name}'") as api:
            zoo.create_model(model_name, data, **overrides)
        run = [f"model={model_name}", f"dataset={dataset_name}", *(f"model.{k}={v}" for k, v in overrides.items())]
        with pytest.raises(ZooError) as planned:
            plan_run(compose(run + [f"dataset.{k}={v}" for k, v in tiny_overrides(dataset_name).items()]))
        assert str(api.value) == str(planned.value)
        with pytest.raises(ZooError, match="but the data is a|from the data|yields shape"):
            zoo.create_model(model_name, data.spec, **overrides)  # a spec alone: no dataset to name


@pytest.mark.parametrize("model_name,dataset_name", compatible_pairs())
def test_model_trains_a_step_on_every_compatible_dataset(model_name, dataset_name, loaded):
    import keras

    from zoo.config import compose, plan_run
    from zoo.run import loss_for

    keras.utils.set_random_seed(0)
    spec, splits = loaded(dataset_name)
    x, y = arrays(splits.train)
    x, y = x[:32], y[:32]
    item = zoo.get_registry().get("model", model_name).item
    if item.objective == zoo.RECONSTRUCTION:
        y = x
    model = zoo.create_model(model_name, spec, **item.tiny)
    overrides = [f"dataset.{k}={v}" for k, v in tiny_overrides(dataset_name).items()] + model_overrides(model_name)
    plan = plan_run(compose([f"model={model_name}", f"dataset={dataset_name}", *overrides]))
    model.compile(optimizer="adam", loss=loss_for(plan, model))
    before = [w.copy() for w in model.get_weights()]
    logs = model.train_on_batch(x, y, return_dict=True)
    assert logs and all(np.isfinite(v) for v in logs.values()), logs
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights())), "a step changed nothing"

    predictions = model.predict(x, verbose=0)
    if item.objective == zoo.RECONSTRUCTION:
        assert predictions.shape == x.shape
    elif item.objective == zoo.LANGUAGE_MODELING:
        assert predictions.shape == (*x.shape, spec.num_classes)
        np.testing.assert_allclose(predictions.sum(axis=-1), 1.0, rtol=1e-4)
    elif item.objective == zoo.CLASSIFICATION:
        width = 1 if spec.binary else spec.num_classes
        assert predictions.shape == (len(x), width)
        assert np.all((predictions >= 0) & (predictions <= 1))

    # The .keras round trip is a conformance check (tests/test_conformance.py), once per model.
    if item.generate is not None:
        samples = item.generate(model, plan.model_config, spec, seed=0, n=3)
        assert len(samples) == 3
        again = item.generate(model, plan.model_config, spec, seed=0, n=3)
        if spec.task == zoo.SEQUENCE:
            assert samples == again and all(set(text) <= set(spec.class_names) for text in samples)
            outside = next(char for char in "☃\x00~abc" if char not in spec.class_names)
            with pytest.warns(InputWarning, match="not in the run's vocabulary"):  # had been read as unknown, unsaid
                item.generate(model, plan.model_config, spec, seed=0, n=1, prompt=f"a{outside}", length=2)
        else:
            assert samples.shape == (3, *spec.input_shape)
            low, high = spec.value_range
            assert samples.min() >= low and samples.max() <= high
            np.testing.assert_array_equal(samples, again)


@pytest.mark.parametrize(
    "name,fractions,expected",
    [
        ("digits", {"validation_fraction": 0.0001}, "the validation split would hold 1 of the 1797 examples, fewer than their 10 classes"),
        ("digits", {"test_fraction": 0.0001}, "raise dataset.test_fraction to 0.006 or more"),
        ("breast_cancer", {"test_fraction": 0.5, "validation_fraction": 0.4999}, "the training split would hold 0 of the 569"),
        ("synthetic_cats", {"test_fraction": 0.0001}, "raise dataset.test_fraction to"),
    ],
)
def test_splits_too_small_for_every_class_name_the_fraction_to_change(name, fractions, expected):
    """scikit-learn's refusal had been the line: "sklearn failed: The test_size = 1 should be
    greater or equal to the number of classes = 10"."""
    with pytest.raises(zoo.ZooError, match=expected):
        zoo.create_dataset(name, **fractions).load(seed=0)


def small_size_cases():
    """(model, key, value): each integer setting (or list of them) of each model at 0 and -1."""
    import dataclasses

    cases = []
    for model, dataset in {p.values[0]: p.values[1] for p in compatible_pairs()}.items():
        item = zoo.get_registry().get("model", model).item
        for f in dataclasses.fields(item.config):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if type(default) is int or (isinstance(default, list) and default and all(type(v) is int for v in default)):
                for value in (0, -1):
                    setting = [value] * len(default) if isinstance(default, list) else value
                    cases.append(pytest.param(model, dataset, f.name, setting, id=f"{model}.{f.name}={value}"))
    return cases


@pytest.mark.parametrize("model_name,dataset_name,key,value", small_size_cases())
def test_a_size_the_config_accepts_builds_a_model_that_runs(model_name, dataset_name, key, value, loaded):
    """A size of 0 or less is refused by the model's config in one line, or is one its model
    runs with: cnn_cat_classifier's dense_units=0 had reached Keras ("keras failed: ValueError:
    Received an invalid value for `units`")."""
    from zoo.config import make_config
    from zoo.errors import ZooError

    spec, splits = loaded(dataset_name)
    entry = zoo.get_registry().get("model", model_name)
    overrides = {**entry.item.tiny, key: value}
    try:
        config = make_config(entry, overrides)
    except ZooError:
        return  # refused, in one line
    if entry.item.accepts and entry.item.accepts(config, spec):
        return  # refused by the model's own check, in one line
    model = zoo.create_model(model_name, spec, **overrides)
    x, _ = arrays(splits.train)
    if entry.item.objective != zoo.GENERATION:
        assert np.all(np.isfinite(np.asarray(model(x[:2], training=False))))
