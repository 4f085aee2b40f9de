"""Network architectures, each buildable from a config entry and convertible to lwtnn."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def tutorial(n_inputs: int, n_classes: int, input_name: str, **_: Any):
    """The tutorial network: the inputs straight into a softmax over the classes
    (a multinomial logistic regression on the baseline discriminants)."""
    import keras

    inputs = keras.Input(shape=(n_inputs,), name=input_name)
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="probabilities")(inputs)
    return keras.Model(inputs, outputs, name="tutorial")


def dl1(n_inputs: int, n_classes: int, input_name: str, hidden: tuple[int, ...] = (64, 32),
        activation: str = "relu", batch_norm: bool = False, dropout: float = 0.0, **_: Any):
    """A DL1-style MLP: dense blocks (optional batch norm and dropout), then a softmax."""
    import keras

    inputs = keras.Input(shape=(n_inputs,), name=input_name)
    x = inputs
    for i, width in enumerate(hidden):
        x = keras.layers.Dense(width, name=f"dense_{i}")(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(name=f"batch_norm_{i}")(x)
        x = keras.layers.Activation(activation, name=f"activation_{i}")(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name=f"dropout_{i}")(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="dl1")


ARCHITECTURES = {"tutorial": tutorial, "dl1": dl1}


def build(architecture: str, options: Mapping[str, Any], n_inputs: int, n_classes: int,
          input_name: str):
    """Build the named architecture with ``options`` from the model's config entry."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; known: {sorted(ARCHITECTURES)}")
    opts = dict(options)
    if "hidden" in opts:
        opts["hidden"] = tuple(opts["hidden"])
    return ARCHITECTURES[architecture](n_inputs, n_classes, input_name, **opts)
