"""A faster stand-in for Keras 3's TimeDistributed, used while training only.

Keras 3's ``TimeDistributed`` with a static number of steps T calls the wrapped layer T
times in a Python loop and stacks the results; for a per-track network over 25-40 tracks that
dominates the training time. ``PerTrack`` computes the same thing as one call on the
[N * T, n] reshaped input. It only exists during training: the saved ``model.keras`` is
rebuilt with the standard ``TimeDistributed`` (same weights, same outputs), which is what the
export stage loads and converts.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="flavourflow")
class PerTrack(keras.layers.TimeDistributed):
    """``TimeDistributed(layer)`` evaluated as ``layer`` on [N * T, n], reshaped back."""

    def call(self, inputs, training=None, mask=None):
        shape = ops.shape(inputs)
        flat = ops.reshape(inputs, (-1, inputs.shape[-1]))
        kwargs = {"training": training} if self.layer._call_has_training_arg else {}
        out = self.layer.call(flat, **kwargs)
        return ops.reshape(out, (shape[0], shape[1], out.shape[-1]))
