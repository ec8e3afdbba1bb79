"""Character-level text: the ``text`` dataset and seed 003's GRU text generator.

Seed 003 sketches Embedding-GRU-Dense trained with sparse categorical cross-entropy; its
Dense layer has no softmax although the loss expects probabilities, and Keras has no
``model.generate``. Here the output is a softmax over the vocabulary at every position,
and generation samples one character at a time from ``p ** (1 / temperature)``.
"""

from __future__ import annotations

import math
import os
import string
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import zoo
from zoo.errors import InputWarning
from zoo.tables import shorten
from zoo_plugins.datasets import check_fractions

# Index 0 of every vocabulary stands for characters outside it.
UNKNOWN = "\ufffd"
# The default corpus is ASCII (non-ASCII characters are dropped from it), so its
# vocabulary is known without reading it: describing stays instant.
ASCII_VOCABULARY = (UNKNOWN, "\n", *sorted(set(string.printable) - set("\t\n\r\x0b\x0c")))

# Standard-library modules whose docstrings make the offline default corpus (about 390,000
# characters of English technical prose on Python 3.11); modules missing from another
# Python version are skipped.
DOCSTRING_MODULES = (
    "argparse", "ast", "bisect", "calendar", "collections/__init__", "contextlib", "csv", "dataclasses",
    "datetime", "decimal", "difflib", "enum", "fractions", "functools", "glob", "gzip", "heapq", "inspect",
    "ipaddress", "json/__init__", "logging/__init__", "operator", "os", "pathlib", "pickle", "pprint", "queue",
    "random", "shlex", "shutil", "statistics", "string", "subprocess", "tarfile", "tempfile", "textwrap",
    "threading", "typing", "unittest/case", "urllib/parse", "uuid", "zipfile",
)  # fmt: skip


@dataclass
class TextConfig:
    path: Optional[str] = zoo.data_path("A UTF-8 text file to learn from (null: docstrings of Python's standard library).")
    sequence_length: int = field(default=64, metadata={"help": "Characters per training window."})
    step: int = field(default=32, metadata={"help": "Characters between the starts of consecutive windows."})
    max_vocabulary: int = field(
        default=200, metadata={"help": "Keep the most frequent characters of a user's file; the rest become one unknown symbol."}
    )
    max_characters: int = field(default=2_000_000, metadata={"help": "Use at most this many characters of the corpus."})
    validation_fraction: float = field(default=0.05, metadata={"help": "Share of the corpus (a block near its end) for validation."})
    test_fraction: float = field(default=0.05, metadata={"help": "Share of the corpus (its last block) for the final test."})

    def __post_init__(self) -> None:
        check_fractions(self.validation_fraction, self.test_fraction)
        if self.sequence_length < 2 or self.step < 1:
            raise ValueError(f"sequence_length must be at least 2 and step at least 1, got {self.sequence_length}, {self.step}")
        if self.max_vocabulary < 2 or self.max_characters < 1:
            raise ValueError("max_vocabulary must be at least 2 and max_characters positive")


def stdlib_docstrings() -> str:
    """Module, class and function docstrings of ``DOCSTRING_MODULES``, read with ``ast``
    (nothing is imported), ASCII only."""
    import ast
    import sysconfig

    root = Path(sysconfig.get_paths()["stdlib"])
    parts = []
    for module in DOCSTRING_MODULES:
        source = root / f"{module}.py"
        if not source.is_file():
            continue
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                docstring = ast.get_docstring(node)
                if docstring:
                    parts.append(docstring)
    return "\n\n".join(parts).encode("ascii", "ignore").decode("ascii")


def read_corpus(config: TextConfig) -> str:
    if config.path is None:
        return stdlib_docstrings()[: config.max_characters]
    path = Path(config.path).expanduser()
    if not path.is_file():  # a folder, or a pipe that open() would wait on for ever
        problem = "no such file" if not path.exists() else "a folder" if path.is_dir() else "not a regular file (a pipe or a device)"
        raise zoo.ZooError(f"dataset.path={config.path}: {problem}; give a UTF-8 text file")
    try:
        with open(path, encoding="utf-8") as file:
            # A character is at least a byte: no more is read than the file holds, where a
            # max_characters of 10**10 ("no limit") had Python allocate for that many.
            text = file.read(min(config.max_characters, os.fstat(file.fileno()).st_size))
    except UnicodeDecodeError as exc:
        raise zoo.ZooError(f"dataset.path={config.path} is not UTF-8 text ({exc.reason} at byte {exc.start}); convert it to UTF-8") from None
    except OSError as exc:
        raise zoo.ZooError(f"dataset.path={config.path} cannot be read ({exc.strerror}); give a readable UTF-8 text file") from None
    if len(text) <= 2 * config.sequence_length:
        raise zoo.ZooError(
            f"dataset.path={config.path} has {len(text)} characters; it needs well over "
            f"dataset.sequence_length={config.sequence_length} (use a longer text or a shorter sequence_length)"
        )
    return text


def vocabulary(config: TextConfig, text: Optional[str] = None) -> tuple[str, ...]:
    """The unknown symbol, then the corpus' most frequent characters in code-point order
    (``text``: the corpus, when the caller has read it already)."""
    if config.path is None:
        return ASCII_VOCABULARY
    counts = Counter(read_corpus(config) if text is None else text).most_common(config.max_vocabulary - 1)
    return (UNKNOWN, *sorted(char for char, _ in counts))


def describe_text(config: TextConfig) -> zoo.DataSpec:
    chars = vocabulary(config)
    return zoo.DataSpec(task=zoo.SEQUENCE, input_shape=(config.sequence_length,), num_classes=len(chars), class_names=chars)


def encode(text: str, chars) -> "np.ndarray":  # noqa: F821
    import numpy as np

    index = {char: i for i, char in enumerate(chars)}
    return np.fromiter((index.get(char, 0) for char in text), dtype=np.int32, count=len(text))


def window_starts(characters: int, length: int, step: int) -> range:
    """Where the windows of ``length`` (and their targets, one further) start in a split."""
    return range(0, characters - length, step)


def windows(ids, length: int, step: int):
    """Inputs ``ids[i:i+length]`` and targets shifted by one, for i every ``step``."""
    import numpy as np

    where = window_starts(len(ids), length, step)
    starts = np.arange(where.start, where.stop, where.step)  # load_text made sure there is one
    offsets = starts[:, None] + np.arange(length)[None, :]
    return ids[offsets], ids[offsets + 1]


def load_text(config: TextConfig, seed: int) -> zoo.Splits:
    """Contiguous blocks, not random windows: train on the start, validate and test on
    the end, so no held-out character was seen in a training window."""
    from zoo.config import refuse_beyond_memory

    text = read_corpus(config)
    chars = vocabulary(config, text)  # one read of the file, not one per use
    ids = encode(text, chars)
    test_start = int(len(ids) * (1.0 - config.test_fraction))
    validation_start = int(len(ids) * (1.0 - config.test_fraction - config.validation_fraction))
    length, step = config.sequence_length, config.step
    # The seed picks where the first training window starts, so another seed sees other windows.
    offset = seed % step
    blocks = {  # each split's characters and the step between its windows' starts
        "train": (ids[offset:validation_start], step),
        "validation": (ids[validation_start:test_start], length),
        "test": (ids[test_start:], length),
    }
    for split, (block, _) in blocks.items():
        if len(block) <= length:  # not one window: it had said "use a longer text" of a tiny fraction
            fraction = f"dataset.{split}_fraction"
            fix = (
                f"raise {fraction} to {math.ceil(1000 * (length + 1) / len(ids)) / 1000} or more, " if split != "train"
                else "lower dataset.validation_fraction or dataset.test_fraction, "
            )
            raise zoo.ZooError(
                f"the {split} split holds {len(block)} of the text's {len(ids):,} characters, less than one window of "
                f"dataset.sequence_length={length}; {fix}or lower dataset.sequence_length, or use a longer text"
            )
    # Windows overlap: each character is copied length / step times, and training copies the
    # arrays once more into tensors. A small step with a long window (step=1,
    # sequence_length=4096: 21 GB from 350,000 characters) had the kernel kill the run unsaid.
    count = sum(len(window_starts(len(block), length, every)) for block, every in blocks.values())
    refuse_beyond_memory(
        count * length * 4 * 2 * 2,  # int32, inputs and targets, NumPy's and TensorFlow's copies
        f"{count:,} windows of dataset.sequence_length={length} characters, one every dataset.step={step}",
        "raise dataset.step, or lower dataset.sequence_length or dataset.max_characters",
    )
    return zoo.Splits(
        **{split: windows(block, length, every) for split, (block, every) in blocks.items()},
        report={"characters": len(ids), "vocabulary": len(chars), "unknown": int((ids == 0).sum())},
    )


@dataclass
class GRUTextGeneratorConfig:
    embedding_dim: int = field(default=64, metadata={"help": "Size of each character's embedding."})
    units: int = field(default=256, metadata={"help": "GRU hidden units."})
    dropout: float = field(default=0.0, metadata={"help": "Dropout on the GRU's outputs (0 disables)."})

    def __post_init__(self) -> None:
        if self.embedding_dim < 1 or self.units < 1:
            raise ValueError("embedding_dim and units must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


def build_gru_text_generator(config: GRUTextGeneratorConfig, spec: zoo.DataSpec):
    """Seed 003: Embedding, GRU over the whole sequence, Dense softmax at every step."""
    import keras
    from keras import layers

    tokens = keras.Input(shape=(None,), dtype="int32", name="tokens")  # any length: generation feeds one at a time
    x = layers.Embedding(spec.num_classes, config.embedding_dim, name="embedding")(tokens)
    x = layers.GRU(config.units, return_sequences=True, name="gru")(x)
    if config.dropout > 0:
        x = layers.Dropout(config.dropout, name="dropout")(x)
    outputs = layers.Dense(spec.num_classes, activation="softmax", name="next_token")(x)
    return keras.Model(tokens, outputs, name="gru_text_generator")


MAX_LENGTH = 100_000  # zoo generate's length: a character a step, each text held in memory


def generate_text(
    model, config, spec: zoo.DataSpec, seed: int, n: int = 3, prompt: str = "", length: int = 400, temperature: float = 0.8
):
    """``n`` texts of ``length`` new characters after ``prompt``, sampled with ``temperature``
    (lower: safer, more repetitive; higher: more surprising; 0: always the likeliest
    character, the same text each time).

    Reads the prompt in one call (the loop over its characters runs inside TensorFlow),
    then runs the GRU's cell one character at a time, carrying its state, so each new
    character costs one step rather than a pass over the whole text so far.
    """
    import keras
    import numpy as np
    import tensorflow as tf

    if not 0 <= temperature < math.inf:
        raise zoo.ZooError(f"temperature={temperature} must be a number from 0 (always the likeliest character) up, e.g. 0.8")
    if not 1 <= length <= MAX_LENGTH or n < 1:
        raise zoo.ZooError(f"length={length} must be from 1 to {MAX_LENGTH} characters and n={n} positive")
    if len(prompt) > MAX_LENGTH:
        raise zoo.ZooError(f"the prompt has {len(prompt):,} characters; give at most {MAX_LENGTH:,} (its end, say)")
    chars = spec.class_names
    unknown = sorted(set(prompt) - set(chars))
    if unknown:  # read as the unknown symbol, as training read them: said, not left for the user to guess
        warnings.warn(
            InputWarning(
                f"the prompt's {shorten(''.join(unknown), 20)!r} {'is' if len(unknown) == 1 else 'are'} not in the run's "
                f"vocabulary of {len(chars) - 1} characters: read as its unknown symbol"
            ),
            stacklevel=2,
        )
    rng = np.random.default_rng(seed)
    embedding, gru, head = (model.get_layer(name) for name in ("embedding", "gru", "next_token"))
    state = tf.zeros((n, gru.cell.units))
    start = encode(prompt or "\n", chars)

    @tf.function
    def step(ids, state):
        output, state = gru.cell(embedding(ids), state, training=False)
        return head(output), state[0] if isinstance(state, (list, tuple)) else state

    if len(start) > 1:
        reader = keras.layers.RNN(gru.cell, return_state=True)
        read = tf.function(lambda ids, state: reader(embedding(ids), initial_state=[state])[1])
        state = read(tf.constant(np.tile(start[:-1], (n, 1))), state)
    probs, state = step(tf.constant(np.full(n, start[-1], dtype=np.int32)), state)
    generated = []
    for _ in range(length):
        probs = np.asarray(probs, dtype=np.float64)
        probs[:, 0] = 0.0  # never emit the unknown symbol
        if temperature == 0:  # the limit of what follows as T -> 0
            ids = probs.argmax(axis=1)
        else:  # p ** (1 / T), renormalised; in log space and from the row's largest (0 after the
            # division, never inf - inf) so that small temperatures neither underflow nor overflow
            logits = np.log(np.maximum(probs, 1e-12))
            logits[:, 0] = -np.inf
            with np.errstate(over="ignore"):  # -1 / 5e-324 is -inf: a weight of 0, as meant
                weights = np.exp((logits - logits.max(axis=1, keepdims=True)) / temperature)
            weights /= weights.sum(axis=1, keepdims=True)
            ids = np.array([rng.choice(len(chars), p=row) for row in weights])
        generated.append(ids)
        probs, state = step(tf.constant(ids.astype(np.int32)), state)
    columns = np.stack(generated, axis=1)
    return [prompt + "".join(chars[i] for i in row) for row in columns]


@zoo.hookimpl
def register_datasets():
    return [
        zoo.DatasetPlugin(
            name="text",
            summary="Character-level corpus from your UTF-8 file; offline default: Python standard-library docstrings.",
            config=TextConfig,
            describe=describe_text,
            factory=load_text,
            tiny={"max_characters": 20000, "sequence_length": 32, "step": 32},
        )
    ]


@zoo.hookimpl
def register_models():
    return [
        zoo.ModelPlugin(
            name="gru_text_generator",
            summary="Character-level Embedding-GRU-softmax language model (seed 003), sampling by temperature.",
            config=GRUTextGeneratorConfig,
            factory=build_gru_text_generator,
            objective=zoo.LANGUAGE_MODELING,
            tasks=(zoo.SEQUENCE,),
            input_rank=1,
            loss="sparse_categorical_crossentropy",
            generate=generate_text,
        )
    ]
