"""A plugin-based model zoo for TensorFlow/Keras.

Plugin authors need only ``from zoo import hookimpl`` and the item types below; users of
the Python API have ``list_plugins`` and ``create_model`` / ``create_dataset`` /
``create_metric``. Importing this package never imports TensorFlow.
"""

from __future__ import annotations

from typing import Any, Optional

from zoo.errors import PluginError, UnknownNameError, ZooError
from zoo.hookspecs import (
    CLASSIFICATION,
    GENERATION,
    LANGUAGE_MODELING,
    RECONSTRUCTION,
    SEQUENCE,
    CallbackPlugin,
    DataSpec,
    DatasetPlugin,
    Logger,
    LoggerPlugin,
    MetricPlugin,
    ModelPlugin,
    RunInfo,
    Splits,
    data_path,
    hookimpl,
    run_reference,
    run_subfolder,
)
from zoo.registry import Registered, get_registry, register_plugin

__version__ = "0.1.0"

__all__ = [
    "CLASSIFICATION",
    "GENERATION",
    "LANGUAGE_MODELING",
    "RECONSTRUCTION",
    "SEQUENCE",
    "CallbackPlugin",
    "DataSpec",
    "DatasetPlugin",
    "Logger",
    "LoggerPlugin",
    "MetricPlugin",
    "ModelPlugin",
    "PluginError",
    "Registered",
    "RunInfo",
    "Splits",
    "UnknownNameError",
    "ZooError",
    "create_dataset",
    "create_metric",
    "create_model",
    "data_path",
    "get_registry",
    "hookimpl",
    "list_plugins",
    "register_plugin",
    "run_reference",
    "run_subfolder",
]


def list_plugins(kind: Optional[str] = None, pattern: str = "*") -> list[Registered]:
    """Registered items, optionally of one kind (``model``, ``dataset``, ``metric``) and
    matching a shell-style ``pattern`` (``"*classifier"``)."""
    return get_registry().list(kind, pattern)


def _spec_of(data: Any) -> DataSpec:
    spec = getattr(data, "spec", data)
    if not isinstance(spec, DataSpec):
        raise TypeError(f"expected a zoo.DataSpec or a dataset with .spec, got {data!r}")
    return spec


def create_model(name: str, data: Any, **overrides: Any) -> Any:
    """Build the model ``name`` (an uncompiled ``keras.Model``) for ``data``.

    Args:
        name: a registered model name.
        data: a :class:`DataSpec`, or a dataset from :func:`create_dataset`.
        **overrides: config fields to change from their defaults.

    Example::

        ds = zoo.create_dataset("digits")
        model = zoo.create_model("cnn_classifier", ds, filters=16)
    """
    from zoo.config import check_model_fits, make_config

    entry = get_registry().get("model", name)
    config, spec = make_config(entry, overrides), _spec_of(data)
    check_model_fits(entry, config, spec, f"dataset {data.name!r}" if isinstance(data, Dataset) else "the data")
    return entry.item.factory(config, spec)


class Dataset:
    """A dataset made by :func:`create_dataset`: its ``spec`` and ``load(seed)``."""

    def __init__(self, entry: Registered, config: Any) -> None:
        self.name = entry.name
        self.config = config
        self._entry = entry
        self.spec: DataSpec = entry.item.describe(config)

    def load(self, seed: int = 0) -> Splits:
        """The train/validation/test splits, made reproducibly from ``seed``."""
        from zoo.config import seed_value

        return self._entry.item.factory(self.config, seed_value(seed))

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, spec={self.spec})"


def create_dataset(name: str, **overrides: Any) -> Dataset:
    """The dataset ``name`` with config ``overrides``; ``.spec`` says what it yields and
    ``.load(seed)`` returns :class:`Splits`."""
    from zoo.config import make_config

    entry = get_registry().get("dataset", name)
    return Dataset(entry, make_config(entry, overrides))


def create_metric(name: str, data: Any, **overrides: Any) -> Any:
    """Build the metric ``name`` (a ``keras.metrics.Metric``) for ``data`` (a
    :class:`DataSpec` or a dataset), with config ``overrides``."""
    from zoo.config import make_config

    entry = get_registry().get("metric", name)
    return entry.item.factory(make_config(entry, overrides), _spec_of(data))
