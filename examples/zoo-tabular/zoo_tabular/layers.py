"""Keras classes of zoo-tabular (this module imports Keras; factories import it).

Registered under the package name `zoo_tabular`, so that a saved model reloads with plain
`keras.saving.load_model` after `import zoo_tabular.layers`, and so that no other plugin's
`ResidualDense` can be mistaken for this one.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="zoo_tabular")
class ResidualDense(keras.layers.Layer):
    """``x + Dense(Dropout(Dense(relu(LayerNorm(x)))))``: a pre-norm residual block that
    keeps the width of its input."""

    def __init__(self, units: int, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.dropout = dropout
        self.norm = keras.layers.LayerNormalization()
        self.hidden = keras.layers.Dense(units, activation="relu")
        self.drop = keras.layers.Dropout(dropout)
        self.out = keras.layers.Dense(units)

    def build(self, input_shape):
        if input_shape[-1] != self.units:
            raise ValueError(f"ResidualDense({self.units}) needs inputs of width {self.units}, got {input_shape[-1]}")
        self.norm.build(input_shape)
        self.hidden.build(input_shape)
        self.out.build((*input_shape[:-1], self.units))

    def call(self, x, training=None):
        return x + self.out(self.drop(self.hidden(self.norm(x)), training=training))

    def get_config(self):
        return {**super().get_config(), "units": self.units, "dropout": self.dropout}


@keras.saving.register_keras_serializable(package="zoo_tabular")
class BalancedAccuracy(keras.metrics.Metric):
    """The mean recall over the classes present in the labels, from a streaming confusion
    matrix (scikit-learn's ``balanced_accuracy_score``)."""

    def __init__(self, num_classes: int, threshold: float = 0.5, name: str = "balanced_accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.num_classes = num_classes
        self.threshold = threshold
        self.confusion = self.add_variable(
            shape=(num_classes, num_classes), initializer="zeros", name="confusion", dtype="float64"
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        if self.num_classes == 2:
            predicted = ops.cast(ops.reshape(y_pred, (-1,)) >= self.threshold, "int32")
        else:
            predicted = ops.cast(ops.argmax(ops.reshape(y_pred, (-1, self.num_classes)), axis=-1), "int32")
        cells = ops.one_hot(labels * self.num_classes + predicted, self.num_classes**2, dtype="float64")
        self.confusion.assign_add(ops.reshape(ops.sum(cells, axis=0), (self.num_classes, self.num_classes)))

    def result(self):
        support = ops.sum(self.confusion, axis=1)
        recalls = ops.divide_no_nan(ops.diagonal(self.confusion), support)
        present = ops.cast(support > 0, "float64")
        return ops.cast(ops.divide_no_nan(ops.sum(recalls * present), ops.sum(present)), self.dtype)

    def reset_state(self):
        self.confusion.assign(ops.zeros_like(self.confusion))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "threshold": self.threshold}
