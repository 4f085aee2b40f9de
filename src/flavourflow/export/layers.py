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
