"""Network architectures, each built from a model's config entry and convertible to lwtnn
(only layers the converter maps: Dense, BatchNormalization, Dropout, Activation,
TimeDistributed(Dense / BatchNormalization / Dropout / Activation), MaskedSum, Concatenate).

Keras inputs, in this order: ``jets`` [n_jet_vars] (when the model has jet inputs), then
``tracks`` [T, n_track_vars] and ``tracks_valid`` [T] (bool, used only as the MaskedSum mask).
The output is a float32 softmax over the classes (also under mixed precision).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flavourflow.core.errors import FlavourflowError


@dataclass(frozen=True)
class Shapes:
    """Input widths from variables.json: jet variables, tracks per jet, track variables."""

    n_jet: int
    n_steps: int = 0
    n_track: int = 0
    jet_name: str = "jets"
    track_name: str = "tracks"

    @property
    def valid_name(self) -> str:
        return f"{self.track_name}_valid"


def _dense_block(x: Any, widths: Sequence[int], activation: str, batch_norm: bool,
                 dropout: float, prefix: str, per_track: bool = False,
                 fast: bool = False) -> Any:
    """Dense (+ batch norm) + activation (+ dropout) per width; per track when ``per_track``
    (with :class:`~flavourflow.train.layers.PerTrack` when ``fast``, else TimeDistributed)."""
    import keras

    def wrap(layer: Any, name: str) -> Any:
        if per_track:
            if fast:
                from flavourflow.train.layers import PerTrack

                return PerTrack(layer, name=name)
            return keras.layers.TimeDistributed(layer, name=name)
        return layer

    for i, width in enumerate(widths):
        x = wrap(keras.layers.Dense(width, name=f"{prefix}dense_{i}"), f"{prefix}td_dense_{i}")(x)
        if batch_norm:
            x = wrap(keras.layers.BatchNormalization(name=f"{prefix}batch_norm_{i}"),
                     f"{prefix}td_batch_norm_{i}")(x)
        x = wrap(keras.layers.Activation(activation, name=f"{prefix}activation_{i}"),
                 f"{prefix}td_activation_{i}")(x)
        if dropout > 0:
            x = wrap(keras.layers.Dropout(dropout, name=f"{prefix}dropout_{i}"),
                     f"{prefix}td_dropout_{i}")(x)
    return x


def _softmax(x: Any, n_classes: int) -> Any:
    import keras

    return keras.layers.Dense(n_classes, activation="softmax", dtype="float32",
                              name="probabilities")(x)


def tutorial(shapes: Shapes, n_classes: int):
    """The tutorial network: the inputs straight into a softmax over the classes
    (a multinomial logistic regression on the baseline discriminants)."""
    import keras

    inputs = keras.Input(shape=(shapes.n_jet,), name=shapes.jet_name)
    return keras.Model(inputs, _softmax(inputs, n_classes), name="tutorial")


def dl1(shapes: Shapes, n_classes: int, hidden: Sequence[int] = (64, 32),
        activation: str = "relu", batch_norm: bool = False, dropout: float = 0.0):
    """A DL1-style MLP over jet-level inputs: dense blocks (optional batch norm and
    dropout), then a softmax."""
    import keras

    inputs = keras.Input(shape=(shapes.n_jet,), name=shapes.jet_name)
    x = _dense_block(inputs, hidden, activation, batch_norm, dropout, "")
    return keras.Model(inputs, _softmax(x, n_classes), name="dl1")


def dips(shapes: Shapes, n_classes: int, track_hidden: Sequence[int] = (64, 64, 32),
         hidden: Sequence[int] = (64, 32), activation: str = "relu", batch_norm: bool = False,
         dropout: float = 0.0, fast: bool = False):
    """Deep sets over tracks (DIPS): the same network on every track, a sum over the valid
    tracks only (padded steps masked out), then a jet-level network and a softmax. Jet inputs,
    when the model has some, join the pooled track representation before the jet network.
    ``fast`` builds the per-track layers as PerTrack (training) instead of TimeDistributed.
    Batch normalisation and dropout apply to the jet-level network only (per-track batch
    statistics would include the padded steps)."""
    import keras

    from flavourflow.export.layers import MaskedSum

    tracks = keras.Input(shape=(shapes.n_steps, shapes.n_track), name=shapes.track_name)
    valid = keras.Input(shape=(shapes.n_steps,), dtype="bool", name=shapes.valid_name)
    h = _dense_block(tracks, track_hidden, activation, False, 0.0, "track_", per_track=True,
                     fast=fast)
    x = MaskedSum(name="sum_over_tracks")([h, valid])
    inputs = [tracks, valid]
    if shapes.n_jet:
        jets = keras.Input(shape=(shapes.n_jet,), name=shapes.jet_name)
        x = keras.layers.Concatenate(name="tracks_and_jet")([x, jets])
        inputs = [jets, *inputs]
    x = _dense_block(x, hidden, activation, batch_norm, dropout, "jet_")
    return keras.Model(inputs, _softmax(x, n_classes), name="dips")


#: Auxiliary tasks of the transformer: output name -> number of classes per track (origin)
#: or per pair of tracks (vertex: same production vertex or not).
AUX_TASKS = {"track_origin": 8, "track_vertex": 1}


def transformer(shapes: Shapes, n_classes: int, embed_dim: int = 48, heads: int = 4,
                layers: int = 3, ff_dim: int = 96, pool_heads: int = 2,
                sum_pooling: bool = True, hidden: Sequence[int] = (64, 32),
                activation: str = "relu", dropout: float = 0.0, aux: Sequence[str] = ()):
    """A GN2-style transformer over tracks: a per-track embedding, ``layers`` pre-norm encoder
    blocks of masked multi-head self-attention (padded tracks neither attend nor are attended
    to) and a feed-forward network, attention pooling over the valid tracks (with
    ``sum_pooling``, beside the sum over them, deep-sets style: attention pooling is a weighted
    mean and forgets how many tracks there are), then (with the jet inputs, if any) a jet
    network and the flavour softmax ``probabilities``.

    ``aux`` adds auxiliary heads on the encoded tracks: ``track_origin`` (softmax over the
    8 truth-origin classes per track, [N, T, 8]) and ``track_vertex`` (probability that two
    tracks share a production vertex, [N, T, T, 1], symmetric). Outputs in that order."""
    import keras

    from flavourflow.export.layers import (
        AttentionPooling,
        MaskedSteps,
        MaskedSum,
        PairFeatures,
        PairMask,
    )

    unknown = set(aux) - set(AUX_TASKS)
    if unknown:
        raise FlavourflowError(f"unknown auxiliary tasks {sorted(unknown)}; known: "
                               f"{sorted(AUX_TASKS)}", field="aux_tasks")
    tracks = keras.Input(shape=(shapes.n_steps, shapes.n_track), name=shapes.track_name)
    valid = keras.Input(shape=(shapes.n_steps,), dtype="bool", name=shapes.valid_name)
    x = MaskedSteps(name="zero_padding")([tracks, valid])
    x = keras.layers.Dense(ff_dim, activation=activation, name="embed_0")(x)
    x = keras.layers.Dense(embed_dim, name="embed_1")(x)
    mask = PairMask(name="attention_mask")(valid)
    for i in range(layers):
        h = keras.layers.LayerNormalization(name=f"encoder_{i}_norm_0")(x)
        h = keras.layers.MultiHeadAttention(heads, embed_dim // heads, dropout=dropout,
                                            name=f"encoder_{i}_attention")(
            h, h, attention_mask=mask)
        x = keras.layers.Add(name=f"encoder_{i}_add_0")([x, h])
        h = keras.layers.LayerNormalization(name=f"encoder_{i}_norm_1")(x)
        h = keras.layers.Dense(ff_dim, activation=activation, name=f"encoder_{i}_ff_0")(h)
        if dropout > 0:
            h = keras.layers.Dropout(dropout, name=f"encoder_{i}_dropout")(h)
        h = keras.layers.Dense(embed_dim, name=f"encoder_{i}_ff_1")(h)
        x = keras.layers.Add(name=f"encoder_{i}_add_1")([x, h])
    x = keras.layers.LayerNormalization(name="encoder_norm")(x)
    pooled = AttentionPooling(pool_heads, name="attention_pooling")([x, valid])
    if sum_pooling:
        summed = MaskedSum(name="sum_over_tracks")([x, valid])
        pooled = keras.layers.Concatenate(name="pooled")([pooled, summed])
    inputs = [tracks, valid]
    if shapes.n_jet:
        jets = keras.Input(shape=(shapes.n_jet,), name=shapes.jet_name)
        pooled = keras.layers.Concatenate(name="tracks_and_jet")([pooled, jets])
        inputs = [jets, *inputs]
    h = _dense_block(pooled, hidden, activation, False, dropout, "jet_")
    outputs = [_softmax(h, n_classes)]
    if "track_origin" in aux:
        o = keras.layers.Dense(embed_dim, activation=activation, name="origin_dense")(x)
        outputs.append(keras.layers.Dense(AUX_TASKS["track_origin"], activation="softmax",
                                          dtype="float32", name="track_origin")(o))
    if "track_vertex" in aux:
        a = keras.layers.Dense(embed_dim // 2, name="vertex_embed")(x)
        p = PairFeatures(name="vertex_pairs")(a)
        p = keras.layers.Dense(embed_dim // 2, activation=activation, name="vertex_dense")(p)
        outputs.append(keras.layers.Dense(1, activation="sigmoid", dtype="float32",
                                          name="track_vertex")(p))
    return keras.Model(inputs, outputs if len(outputs) > 1 else outputs[0], name="transformer")


ARCHITECTURES = {"tutorial": tutorial, "dl1": dl1, "dips": dips, "transformer": transformer}
#: Which inputs each architecture needs: (jet inputs, track inputs); None: optional.
NEEDS = {"tutorial": (True, False), "dl1": (True, False), "dips": (None, True),
         "transformer": (None, True)}
#: Architectures lwtnn cannot express, deployed through ONNX alone, with the reason.
ONNX_ONLY = {"transformer": "lwtnn has no attention layers"}


def build(architecture: str, options: Mapping[str, Any], shapes: Shapes, n_classes: int,
          fast: bool = False, aux: Sequence[str] = ()):
    """Build the named architecture with ``options`` from the model's config entry;
    ``fast``: the training-time variant (same weights, faster per-track layers); ``aux``: the
    auxiliary tasks (transformer only)."""
    if architecture not in ARCHITECTURES:
        raise FlavourflowError(f"unknown architecture {architecture!r}; known: "
                               f"{sorted(ARCHITECTURES)}", field="architecture")
    jets, tracks = NEEDS[architecture]
    for needed, have, what in ((jets, shapes.n_jet > 0, "jet_variables"),
                               (tracks, shapes.n_track > 0, "track_variables")):
        if needed is not None and needed != have:
            raise FlavourflowError(
                f"architecture {architecture} {'needs' if needed else 'takes no'} {what}",
                field=what)
    parameters = set(inspect.signature(ARCHITECTURES[architecture]).parameters)
    known = parameters - {"shapes", "n_classes", "fast", "aux"}
    for key in set(options) - known:
        raise FlavourflowError(f"architecture {architecture} has no option {key!r}; it has "
                               f"{sorted(known) or 'none'}", field=f"options.{key}")
    opts = dict(options)
    for key in ("hidden", "track_hidden"):
        if key in opts:
            opts[key] = tuple(opts[key])
    if fast and "fast" in parameters:  # only dips has a training-time variant
        opts["fast"] = True
    if aux:
        if "aux" not in parameters:
            raise FlavourflowError(f"architecture {architecture} has no auxiliary tasks",
                                   field="aux_tasks")
        opts["aux"] = tuple(aux)
    return ARCHITECTURES[architecture](shapes, n_classes, **opts)
