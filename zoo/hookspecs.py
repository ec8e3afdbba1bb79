"""The plugin contract: the hooks a plugin implements and the types they return.

A plugin is a module (or any object) with functions marked ``@zoo.hookimpl``, found
through the ``zoo.plugins`` entry-point group::

    # pyproject.toml of your distribution
    [project.entry-points."zoo.plugins"]
    my_models = "my_package.zoo_plugin"

    # my_package/zoo_plugin.py
    from dataclasses import dataclass, field
    import zoo

    @dataclass
    class TinyConfig:
        units: int = field(default=16, metadata={"help": "Hidden units."})

    def build_tiny(config: TinyConfig, spec: zoo.DataSpec):
        import keras  # heavy imports belong inside factories
        ...

    @zoo.hookimpl
    def register_models():
        return [zoo.ModelPlugin("tiny", "A tiny dense classifier.", TinyConfig, build_tiny)]

Registering must stay cheap: a plugin module imports no TensorFlow or Keras at import
time, so that listing, describing and validating stay fast. Factories import what they
need when called.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

import pluggy

PROJECT = "zoo"
ENTRY_POINT_GROUP = "zoo.plugins"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

# What a dataset provides (DataSpec.task):
#   classification  examples with integer class labels;
#   sequence        integer token sequences whose targets are the same sequences shifted
#                   by one (the next token at every position); class_names is the vocabulary.
# What a model learns (ModelPlugin.objective):
#   classification     predicts the labels;
#   reconstruction     reproduces the inputs (labels unused);
#   generation         learns to make new examples like the inputs, adversarially (no
#                      targets; its training step is its own);
#   language_modeling  predicts the next token at every position of a sequence.
CLASSIFICATION = "classification"
SEQUENCE = "sequence"
RECONSTRUCTION = "reconstruction"
GENERATION = "generation"
LANGUAGE_MODELING = "language_modeling"
TASKS = (CLASSIFICATION, SEQUENCE)
OBJECTIVES = (CLASSIFICATION, RECONSTRUCTION, GENERATION, LANGUAGE_MODELING)


# --------------------------------------------------------------------------------------
# What datasets describe and yield
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataSpec:
    """What a dataset yields, known before any data is loaded.

    Args:
        task: one of ``zoo.hookspecs.TASKS``.
        input_shape: shape of one example, without the batch dimension.
        num_classes: number of classes for classification (2 means binary: models emit
            one sigmoid probability for class 1; more means one softmax column per class).
        class_names: a name per class, in label order.
        value_range: ``(low, high)`` bounds of the input values where they are known
            (``(0.0, 1.0)`` for scaled pixel intensities), else ``None``.
        feature_names: for examples of features (rank 1), a name per feature, if known
            (``zoo explain`` labels its bars with them).
    """

    task: str
    input_shape: tuple[int, ...]
    num_classes: int = 0
    class_names: tuple[str, ...] = ()
    value_range: Optional[tuple[float, float]] = None
    feature_names: tuple[str, ...] = ()

    @property
    def binary(self) -> bool:
        return self.task == CLASSIFICATION and self.num_classes == 2


RUN_REFERENCE = "zoo_run_reference"  # field metadata: the field names another run


def run_reference(help: str) -> Any:
    """A config field (``Optional[str]``) that names another run: a teacher, a parent to start
    from. The zoo makes it absolute when the config is composed (a relative path would break
    once the run is started elsewhere), checks before any work that it is a finished run, and
    records it with its model's digest in ``training.json``; a run whose model factory reads
    it says so in one line when the run it names has moved."""
    return dataclasses.field(default=None, metadata={"help": help, RUN_REFERENCE: True})


DATA_PATH = "zoo_data_path"  # field metadata: the field names a file or folder of the user's data
PATH_KEYWORDS = "zoo_path_keywords"  # field metadata: the values of a path field that are no path


def data_path(help: str, default: Optional[str] = None, keywords: Sequence[str] = ()) -> Any:
    """A config field (``str`` or ``Optional[str]``) naming a file or folder a plugin reads
    (a corpus, a folder of images, a weights file), or one of ``keywords`` (``imagenet``,
    ``none``: values that are no path). The zoo makes a path absolute (``~`` expanded; a URL
    such as ``gs://bucket/data`` stays as given) when the config is composed and records it
    so in the run's ``config.yaml``: a relative path would otherwise be read again from
    whatever folder a later ``zoo evaluate``, ``export`` or continued run starts in, and
    could silently name other data there."""
    return dataclasses.field(default=default, metadata={"help": help, DATA_PATH: True, PATH_KEYWORDS: tuple(keywords)})


RUN_SUBFOLDER = "zoo_run_subfolder"  # field metadata: the field names a folder inside the run


def run_subfolder(default: str, help: str) -> Any:
    """A config field (``str``) naming a folder inside the run directory where a plugin writes
    (snapshots, a tracker's logs). The zoo refuses an absolute path or one leading out with
    ``..`` in one line before any work, so that nothing a run writes lands outside its folder
    (over files that are not the run's)."""
    return dataclasses.field(default=default, metadata={"help": help, RUN_SUBFOLDER: True})


INFINITE_CARDINALITY = -1  # tf.data.INFINITE_CARDINALITY (without TensorFlow): a split that never ends is refused


@dataclass
class Splits:
    """Train/validation/test data as returned by a dataset factory.

    Each split is either a pair of arrays ``(x, y)`` or an unbatched ``tf.data.Dataset``
    of ``(x, y)`` pairs; the core shuffles, batches and prefetches. ``report`` says what a
    user should know about the loading (counts, skipped files with the reason); the run
    writes it to ``data.json`` and warns about any ``skipped`` entries.

    ``ids`` may name each split's examples, in order (``{"train": [...], "validation": [...],
    "test": [...]}``: row numbers of a fixed source, file names), where the same name is the
    same example under every seed and split. The zoo then tells by them whether a model
    trained on another seed's split (``zoo evaluate RUN seed=3``, a teacher) has seen a test
    example; without them it compares the examples' values, which a split's own
    standardisation changes (every example then looks new).
    """

    train: Any
    validation: Any
    test: Any
    report: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    ids: Mapping[str, Sequence[Any]] = dataclasses.field(default_factory=dict)


# --------------------------------------------------------------------------------------
# What plugins register
# --------------------------------------------------------------------------------------


# Names a run's records already use beside the metrics' own: a metric named so would take the
# test loss's place in metrics.json (``loss``), add a second ``epoch`` column to history.csv,
# be read as the validation value of another (``val_*``) or as cross-validation's spread
# (``*_std``, ``folds``: that one failed the run at its end).
RESERVED_METRIC_NAMES = frozenset({"auto", "loss", "lr", "learning_rate", "epoch", "folds"})


# What Hydra's override grammar reads as None, a bool or a float, in any case.
HYDRA_WORDS = frozenset({"null", "true", "false", "inf", "nan"})


def _check_item(kind: str, name: str, summary: str, config: type, factory: Callable) -> None:
    if kind == "metric" and name == "auto":
        raise ValueError("metric name 'auto' is reserved: metrics=auto picks the model's standard metrics")
    if kind == "metric" and (name in RESERVED_METRIC_NAMES or name.startswith("val_") or name.endswith("_std")):
        raise ValueError(
            f"metric name {name!r} is reserved: a run's records use it (loss, lr, learning_rate, epoch, folds, val_<metric>, "
            "<metric>_std); choose another"
        )
    if kind in ("callback", "logger") and name == "none":
        raise ValueError(f"{kind} name 'none' is reserved: {kind}s=none chooses none")
    if not name or not name.replace("_", "a").isalnum() or not name[0].isalpha():
        raise ValueError(f"{kind} name {name!r} must be an identifier like 'my_{kind}'")
    if name.lower() in HYDRA_WORDS:  # listed, it could never be chosen: `model=null` is no model
        raise ValueError(f"{kind} name {name!r} is a value to Hydra's command line (null, true, false, inf, nan in any case); choose another")
    if not summary or "\n" in summary:
        raise ValueError(f"{kind} {name!r} needs a one-line summary")
    if not (isinstance(config, type) and dataclasses.is_dataclass(config)):
        raise TypeError(f"{kind} {name!r}: config must be a dataclass type, got {config!r}")
    if "name" in {f.name for f in dataclasses.fields(config)}:
        raise ValueError(f"{kind} {name!r}: config field 'name' is reserved by the zoo")
    if not callable(factory):
        raise TypeError(f"{kind} {name!r}: factory must be callable, got {factory!r}")


@dataclass(frozen=True)
class ModelPlugin:
    """A model: ``factory(config, spec: DataSpec) -> keras.Model`` (uncompiled).

    Args:
        name: unique name, chosen on the command line as ``model=<name>``.
        summary: one line for ``zoo list``.
        config: a dataclass of hyper-parameters; each field's ``metadata["help"]`` is
            shown by ``zoo info``.
        factory: builds the model for data described by ``spec``.
        objective: what the model learns, one of ``OBJECTIVES``: ``classification``
            (targets are the labels; outputs one sigmoid probability for two classes, a
            softmax otherwise), ``reconstruction`` (targets are the inputs; outputs their
            shape), ``language_modeling`` (next-token probabilities at every position) or
            ``generation`` (its own ``train_step``, no targets: a GAN).
        tasks: the dataset tasks it can learn from.
        input_rank: the rank of one example the model needs (3 for height, width,
            channels images), or ``None`` for any.
        accepts: optional ``accepts(config, spec) -> None | str``, a cheap check of
            anything else the model needs from the data; a string says why it does not fit.
        loss: a Keras loss name or object; ``None`` picks the standard loss for the
            objective (binary or sparse categorical cross-entropy; mean squared error).
            Models with their own ``train_step`` (generation, a VAE) ignore it.
        generate: optional ``generate(model, config, spec, seed, n=..., **options)``:
            ``n`` new examples from a trained model, reproducible from ``seed``, as an
            array of images (``n, height, width, channels`` in the data's value range) or
            a list of strings. Its keyword options (with defaults, ``n`` among them) are
            what ``zoo generate RUN_DIR key=value`` accepts.
        test_specs: small data descriptions the conformance checks (``zoo check``,
            ``zoo.testing``) build and train the model on; empty: derived from ``tasks``
            and ``input_rank`` (8x8 to 64x64 RGB images in [0, 1], 6 features, or
            sequences of 12 tokens; binary and 3 classes), the first sizes ``accepts`` takes.
        tiny: config overrides that make the model small and quick to build, for the
            conformance checks and tests (a pretrained backbone without its download:
            ``{"weights": "none"}``).
        without_starting_weights: config overrides that build the model without the
            weights training starts from (a download, a file), applied whenever the zoo
            builds a trained model again to read its weights into (``zoo evaluate``,
            ``predict``, ``export``, ``explain``, ``generate``, a warm start's or a teacher's
            run): ``{"weights": "none"}``. Those weights are replaced at once, and a run
            copied to a machine without that file or network would fail on them.
    """

    name: str
    summary: str
    config: type
    factory: Callable[..., Any]
    objective: str = CLASSIFICATION
    tasks: Sequence[str] = (CLASSIFICATION,)
    input_rank: Optional[int] = None
    accepts: Optional[Callable[[Any, DataSpec], Optional[str]]] = None
    loss: Any = None
    generate: Optional[Callable[..., Any]] = None
    test_specs: Sequence[DataSpec] = ()
    tiny: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    without_starting_weights: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_item("model", self.name, self.summary, self.config, self.factory)
        if self.objective not in OBJECTIVES:
            raise ValueError(f"model {self.name!r}: objective must be one of {OBJECTIVES}, got {self.objective!r}")
        unknown = set(self.without_starting_weights) - {f.name for f in dataclasses.fields(self.config)}
        if unknown:
            raise ValueError(f"model {self.name!r}: without_starting_weights names {', '.join(sorted(map(str, unknown)))}, not fields of its config")


@dataclass(frozen=True)
class DatasetPlugin:
    """A dataset.

    Args:
        name: unique name, chosen as ``dataset=<name>``.
        summary: one line for ``zoo list``.
        config: a dataclass of options (paths, split fractions, ...).
        describe: ``describe(config) -> DataSpec``; cheap, must not import TensorFlow,
            so that incompatible choices fail before any heavy work.
        factory: ``factory(config, seed: int) -> Splits``.
        tiny: config overrides that make the dataset small and quick (few, small
            examples), used by tests and smoke runs to exercise every model on it; or,
            for a dataset that reads files, ``tiny(directory) -> overrides``, which first
            writes a small example of those files (in their real format) into ``directory``.
        prepare: optional ``prepare(config, seed, x) -> x`` for ``zoo predict``: turns
            user inputs as the core reads them (images resized to the input shape with
            values in [0, 1]; CSV rows of raw numbers) into what the dataset yields, e.g.
            standardising with the training split's statistics. ``None`` passes them on.
    """

    name: str
    summary: str
    config: type
    describe: Callable[[Any], DataSpec]
    factory: Callable[..., Splits]
    tiny: Mapping[str, Any] | Callable[[Any], Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    prepare: Optional[Callable[..., Any]] = None

    def __post_init__(self) -> None:
        _check_item("dataset", self.name, self.summary, self.config, self.factory)


@dataclass(frozen=True)
class MetricPlugin:
    """A metric: ``factory(config, spec: DataSpec) -> keras.metrics.Metric``.

    Args:
        name: unique name, listed in ``metrics=[...]``; also the name the metric logs
            under (``val_<name>`` on validation data).
        summary: one line for ``zoo list``.
        config: a dataclass of options.
        factory: builds the Keras metric for data described by ``spec``.
        objectives: the model objectives this metric scores.
        reference: ``reference(y_true, y_pred, spec, config) -> float`` on numpy arrays,
            the ground truth the metric must agree with (``zoo check`` fails without it).
        default: whether ``metrics=auto`` (the default) includes it for its objectives.
        tolerance: how far from ``reference`` the streamed Keras result may be (float32
            sums, histogram-binned curves).
        greater_is_better: whether a larger value is a better model (accuracy: True; an
            error: False). Early stopping and the plateau schedule with ``mode=auto``, and
            an Optuna search with ``direction=auto``, go by it; undeclared (None), they ask
            the user to say, and ``zoo check`` fails.
    """

    name: str
    summary: str
    config: type
    factory: Callable[..., Any]
    objectives: Sequence[str] = (CLASSIFICATION,)
    reference: Optional[Callable[..., float]] = None
    default: bool = False
    tolerance: float = 1e-6
    greater_is_better: Optional[bool] = None

    def __post_init__(self) -> None:
        _check_item("metric", self.name, self.summary, self.config, self.factory)


@dataclass(frozen=True)
class RunInfo:
    """What callback and logger factories know of the run they serve.

    Args:
        run_dir: the run directory (absolute).
        name: the run's name (its directory's name).
        params: the run's resolved config, flattened to dotted keys.
        spec: what the dataset yields.
        seed: the run's seed.
        resumed: whether this attempt continues an interrupted run.
        chief: whether this process writes the run directory (in a multi-worker run, only
            worker 0 does; callbacks run on every worker).
    """

    run_dir: Any
    name: str
    params: Mapping[str, Any]
    spec: DataSpec
    seed: int
    resumed: bool = False
    chief: bool = True


@dataclass(frozen=True)
class CallbackPlugin:
    """A training callback: ``factory(config, run: RunInfo) -> keras.callbacks.Callback``.

    Chosen with ``callbacks=[name,...]``, set with ``callbacks.<name>.<field>=...``. The
    zoo's loop calls ``on_train_begin``, ``on_epoch_begin``, ``on_train_batch_begin``,
    ``on_train_batch_end`` (logs: the step's losses), ``on_epoch_end`` (logs: every training
    and ``val_`` value of the epoch; values a callback adds to them, such as ``lr``, go into
    ``history.csv``) and ``on_train_end``; no ``on_test_*`` or ``on_predict_*``. Setting
    ``self.model.stop_training = True`` ends training after the epoch.

    A callback whose state must survive a resume defines ``get_state() -> dict`` and
    ``set_state(state)``: values are JSON-serialisable, or lists of NumPy arrays (weights).
    The zoo saves the state in every checkpoint and restores it after ``on_train_begin``.
    Every worker of a multi-worker run calls the factory and runs the callback (their
    decisions must agree); only where ``run.chief`` should it write files.

    Args:
        name: unique name.
        summary: one line for ``zoo list``.
        config: a dataclass of options.
        factory: builds the callback.
    """

    name: str
    summary: str
    config: type
    factory: Callable[..., Any]

    def __post_init__(self) -> None:
        _check_item("callback", self.name, self.summary, self.config, self.factory)


class Logger:
    """An experiment tracker's side of a run; subclass it and override what you need.

    The zoo calls these on the chief process only, from a thread of their own, so a slow
    or failing tracker never holds training up: the first exception is reported as one
    warning and the logger is not called again for that run.
    """

    def start(self) -> None:
        """The run starts (or resumes: ``run.resumed``); log its parameters here."""

    def log_epoch(self, epoch: int, logs: Mapping[str, float]) -> None:
        """One epoch's values (``history.csv``'s row; ``epoch`` counts from 1)."""

    def finish(self, metrics: Mapping[str, float], files: Sequence[Any]) -> None:
        """The run finished: its test metrics and its files (plots, model, config)."""


@dataclass(frozen=True)
class LoggerPlugin:
    """An experiment tracker: ``factory(config, run: RunInfo) -> Logger``.

    Chosen with ``loggers=[name,...]``, set with ``loggers.<name>.<field>=...``.

    Args:
        name: unique name.
        summary: one line for ``zoo list``.
        config: a dataclass of options.
        factory: builds the logger for one run.
        read_back: optional ``read_back(config, run: RunInfo) -> {name: [value per epoch]}``,
            what the tracker holds for the run; ``zoo check`` logs a few epochs and
            compares.
        requires: modules the tracker needs that may not be installed (an optional
            extra): ``zoo check`` skips it without them.
    """

    name: str
    summary: str
    config: type
    factory: Callable[..., Logger]
    read_back: Optional[Callable[..., Mapping[str, Sequence[float]]]] = None
    requires: Sequence[str] = ()

    def __post_init__(self) -> None:
        _check_item("logger", self.name, self.summary, self.config, self.factory)


# --------------------------------------------------------------------------------------
# Hooks. Each returns a list of items; every implementation is called and the lists are
# concatenated. A name must be unique within its kind across all installed plugins.
# --------------------------------------------------------------------------------------


@hookspec
def register_models() -> list[ModelPlugin]:
    """Return the models this plugin provides.

    :returns: a list of :class:`ModelPlugin`.
    """


@hookspec
def register_datasets() -> list[DatasetPlugin]:
    """Return the datasets this plugin provides.

    :returns: a list of :class:`DatasetPlugin`.
    """


@hookspec
def register_metrics() -> list[MetricPlugin]:
    """Return the metrics this plugin provides.

    :returns: a list of :class:`MetricPlugin`.
    """


@hookspec
def register_callbacks() -> list[CallbackPlugin]:
    """Return the training callbacks this plugin provides.

    :returns: a list of :class:`CallbackPlugin`.
    """


@hookspec
def register_loggers() -> list[LoggerPlugin]:
    """Return the experiment trackers this plugin provides.

    :returns: a list of :class:`LoggerPlugin`.
    """


@hookspec
def register_config_paths() -> list[str]:
    """Return Hydra config search-path entries this plugin ships, such as
    ``"pkg://my_package.conf"`` (a package holding YAML files).

    Their config groups extend the zoo's: ``experiment/<name>.yaml`` becomes
    ``zoo train +experiment=<name>``, ``trainer/<name>.yaml`` a ``trainer=<name>``. The
    zoo's own configs come first, so a plugin cannot replace them.

    :returns: a list of ``pkg://`` or ``file://`` search-path entries.
    """


# The kinds of item, the hook that registers each, and the class it must return.
KINDS: dict[str, tuple[str, type]] = {
    "model": ("register_models", ModelPlugin),
    "dataset": ("register_datasets", DatasetPlugin),
    "metric": ("register_metrics", MetricPlugin),
    "callback": ("register_callbacks", CallbackPlugin),
    "logger": ("register_loggers", LoggerPlugin),
}
