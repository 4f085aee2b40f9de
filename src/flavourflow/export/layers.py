"""Custom Keras layers that the lwtnn converter knows how to export.

Kept in their own module so that training code can build models with them and
``keras.saving.load_model`` can find them (importing this module registers them).
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="flavourflow")
class MaskedSum(keras.layers.Layer):
    """Deep-sets pooling: sum a sequence over the time axis, keeping only the valid steps.

    Called as ``MaskedSum()([values, valid])`` with ``values`` [N, T, F] and ``valid`` [N, T]
    (bool, or 0/1). Padded steps are dropped with ``where`` rather than multiplied by 0, so NaN
    padding cannot leak into the sum. Exported to lwtnn as a ``sum`` node, which sums the steps
    the caller feeds (the valid ones): the ``valid`` input is not an lwtnn variable input.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = False

    def call(self, inputs):
        values, valid = inputs
        keep = ops.expand_dims(ops.cast(valid, "bool"), axis=-1)
        return ops.sum(ops.where(keep, values, ops.zeros_like(values)), axis=1)

    def compute_output_shape(self, input_shape):
        values_shape = input_shape[0]
        return (values_shape[0], values_shape[2])


# --- the transformer's layers (exported to ONNX only: lwtnn has no attention) ---------------


@keras.saving.register_keras_serializable(package="flavourflow")
class MaskedSteps(keras.layers.Layer):
    """``values`` with every padded step set to 0 (``where``, so NaN padding cannot leak into
    attention, whose matrix products would carry it into every valid step)."""

    def call(self, inputs):
        values, valid = inputs
        keep = ops.expand_dims(ops.cast(valid, "bool"), axis=-1)
        return ops.where(keep, values, ops.zeros_like(values))

    def compute_output_shape(self, input_shape):
        return input_shape[0]


@keras.saving.register_keras_serializable(package="flavourflow")
class PairMask(keras.layers.Layer):
    """The [N, T, T] attention mask of a [N, T] validity mask: step i attends to valid steps
    j; a padded step i attends to every step (its output is never used, and a row without any
    allowed key would be a softmax over nothing)."""

    def call(self, valid):
        valid = ops.cast(valid, "bool")
        keys = ops.expand_dims(valid, axis=1)
        queries = ops.expand_dims(valid, axis=2)
        return ops.logical_or(ops.logical_and(keys, queries), ops.logical_not(queries))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], input_shape[1])


@keras.saving.register_keras_serializable(package="flavourflow")
class AttentionPooling(keras.layers.Layer):
    """Pooling over the valid steps with ``heads`` learned attention distributions: per head a
    softmax over the valid steps of a linear score, the weighted sum of the steps; the heads
    concatenated ([N, heads * F]). A jet without valid steps pools to 0."""

    def __init__(self, heads: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.heads = int(heads)

    def build(self, input_shape):
        width = input_shape[0][-1]
        self.kernel = self.add_weight(name="kernel", shape=(width, self.heads),
                                      initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(self.heads,), initializer="zeros")

    def call(self, inputs):
        values, valid = inputs
        keep = ops.expand_dims(ops.cast(valid, "bool"), axis=-1)  # [N, T, 1]
        scores = ops.matmul(values, ops.cast(self.kernel, values.dtype)) + ops.cast(
            self.bias, values.dtype)  # [N, T, H]
        scores = ops.where(keep, scores, ops.full_like(scores, -1e4))
        weights = ops.softmax(scores, axis=1)
        weights = ops.where(keep, weights, ops.zeros_like(weights))
        pooled = ops.einsum("nth,ntf->nhf", weights, values)
        return ops.reshape(pooled, (-1, self.heads * values.shape[-1]))

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.heads * input_shape[0][-1])

    def get_config(self):
        return {**super().get_config(), "heads": self.heads}


@keras.saving.register_keras_serializable(package="flavourflow")
class PairFeatures(keras.layers.Layer):
    """Symmetric features of every pair of steps: [a_i * a_j, |a_i - a_j|] ([N, T, T, 2F])."""

    def call(self, a):
        left, right = ops.expand_dims(a, axis=2), ops.expand_dims(a, axis=1)
        return ops.concatenate([left * right, ops.abs(left - right)], axis=-1)

    def compute_output_shape(self, input_shape):
        n, t, f = input_shape
        return (n, t, t, 2 * f)
