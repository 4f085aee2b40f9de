"""The training input pipeline: contiguous batches of the `.npy` memmaps, read by tf.data.

The preprocess stage wrote every split in a uniformly shuffled order, so a batch can be a
contiguous run of rows (one sequential read per file); only the order of the batches changes
from epoch to epoch, drawn from (seed, epoch) so that a run resumed at epoch k sees the batches
an uninterrupted run would.

The files are read by TensorFlow's own fixed-length-record reader at the offsets of each batch
in the `.npy` body, and decoded in the graph: no Python runs per batch, so streaming from disk
keeps up with in-memory arrays (benchmarks/bench_train.py), and memory holds a few prefetched
batches whatever the size of the split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flavourflow.core.errors import FlavourflowError

#: dtypes of the preprocess outputs that the reader decodes (little-endian, as numpy writes).
_DTYPES = ("<f4", "|b1", "|i1", "<i4", "<i8")


@dataclass(frozen=True)
class Member:
    """One `.npy` file of a split: where its rows start and what they hold."""

    path: Path
    header_bytes: int
    rows: int
    row_shape: tuple[int, ...]
    dtype: np.dtype
    #: bytes after the last row (none, as numpy writes them)
    trailing_bytes: int = 0

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize


def _member(path: Path) -> Member:
    """Read the `.npy` header of ``path`` (no pickle): shape, dtype and the body's offset."""
    if not path.is_file():
        raise FlavourflowError("missing preprocessed array", path=path)
    with open(path, "rb") as stream:
        try:
            version = np.lib.format.read_magic(stream)
            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                    else np.lib.format.read_array_header_2_0)
            shape, fortran_order, dtype = read(stream)
        except ValueError as err:
            raise FlavourflowError(f"not a .npy array ({err})", path=path) from None
        offset = stream.tell()
    if fortran_order or dtype.str not in _DTYPES or not shape:
        raise FlavourflowError(f"expected a C-ordered array of {_DTYPES}, found {dtype.str} "
                               f"{shape}{' (Fortran order)' if fortran_order else ''}",
                               path=path, field="dtype")
    row_shape = tuple(int(s) for s in shape[1:])
    body = int(shape[0]) * int(np.prod(row_shape, dtype=np.int64)) * dtype.itemsize
    trailing = path.stat().st_size - offset - body
    if trailing < 0:
        raise FlavourflowError(f"file is shorter than its header's shape {shape}", path=path)
    return Member(path, offset, int(shape[0]), row_shape, dtype, trailing)


@dataclass(frozen=True)
class Split:
    """The files of one split: the model inputs (in the model's input order), labels,
    weights."""

    inputs: tuple[Member, ...]
    labels: Member
    weights: Member

    def __len__(self) -> int:
        return self.labels.rows

    def num_batches(self, batch_size: int) -> int:
        return -(-len(self) // batch_size)


def open_split(directory: Path, split: str, names: Sequence[str]) -> Split:
    """The `.npy` files of ``split`` in ``directory``; all must have the same number of
    rows."""
    members = [_member(directory / f"{split}_{name}.npy") for name in [*names, "labels",
                                                                        "weights"]]
    rows = {m.rows for m in members}
    if len(rows) != 1:
        raise FlavourflowError(f"arrays of split {split} have different lengths {rows}",
                               path=directory)
    return Split(tuple(members[:-2]), members[-2], members[-1])


#: Batches whose order is permuted together (a window of the epoch's sequence).
WINDOW = 32


def make_dataset(split: Split, batch_size: int, seed: int | None, epoch: int = 0):
    """A ``tf.data.Dataset`` of the ``(inputs, labels, weights)`` batches of one epoch;
    labels as int32, inputs as stored.

    Batch b holds rows [b * batch_size, (b + 1) * batch_size). With a ``seed``, the epoch
    starts at a batch drawn from (seed, epoch), runs through the file (wrapping round) and
    permutes the batches within windows of :data:`WINDOW`, also from (seed, epoch); the short
    last batch comes last. Without one, the batches come in the file order. One dataset per
    epoch, with the offsets fixed when it is built: a pipeline that chose them per epoch in
    the graph (a flat_map over epochs) cost twice as much per batch.
    """
    import tensorflow as tf

    n = len(split)
    full = n // batch_size
    members = [*split.inputs, split.labels, split.weights]

    def records(first_row: int, rows: int, record_rows: int):
        """rows [first_row, first_row + rows) of every file, record_rows rows per record."""
        return tf.data.Dataset.zip(tuple(
            tf.data.FixedLengthRecordDataset(
                str(m.path), record_rows * m.row_bytes,
                header_bytes=m.header_bytes + first_row * m.row_bytes,
                footer_bytes=(n - first_row - rows) * m.row_bytes + m.trailing_bytes)
            for m in members))

    def decode(*records):
        arrays = [tf.reshape(tf.io.decode_raw(r, tf.as_dtype(m.dtype)), (-1, *m.row_shape))
                  for r, m in zip(records, members, strict=True)]
        inputs = tuple(arrays[:-2])
        return (inputs if len(inputs) > 1 else inputs[0], tf.cast(arrays[-2], tf.int32),
                arrays[-1])

    start = 0
    if seed is not None and full > 1:
        start = int(np.random.default_rng([seed, epoch]).integers(full))
    batches = records(start * batch_size, (full - start) * batch_size, batch_size).concatenate(
        records(0, start * batch_size, batch_size)).map(decode)
    if seed is not None:
        def permute(window, group):
            order = tf.random.experimental.stateless_shuffle(
                tf.range(tf.shape(group[1])[0]),
                tf.stack([tf.constant(seed, tf.int64), epoch * 1_000_003 + window]))
            return tf.nest.map_structure(lambda a: tf.gather(a, order), group)
        batches = batches.batch(WINDOW).enumerate().map(permute).unbatch()
    if n > full * batch_size:
        batches = batches.concatenate(records(full * batch_size, n - full * batch_size,
                                              n - full * batch_size).map(decode))
    return (batches.apply(tf.data.experimental.assert_cardinality(split.num_batches(
        batch_size))).prefetch(tf.data.AUTOTUNE))


#: Memmap stems of the auxiliary tasks' per-track truth (see the preprocess stage).
TRUTH_STEMS = ("tracks_origin", "tracks_vertex")
#: The auxiliary outputs, in the transformer's output order (after ``probabilities``).
TASK_ORDER = ("track_origin", "track_vertex")


def with_aux_targets(dataset, tasks: Sequence[str], n_inputs: int):
    """``dataset`` (from :func:`make_dataset` on a split opened with the model inputs then
    :data:`TRUTH_STEMS`) as ``(inputs, targets, sample weights)`` in the model's output order:
    the
    flavour (``probabilities``, with the jet weights), ``track_origin`` (the origin class of
    each valid track) and ``track_vertex`` (1 for a pair of distinct valid tracks from one
    truth vertex, 0 for other pairs of distinct valid tracks). Padded tracks and the diagonal
    weigh 0; the other weights are scaled to average 1 over the batch, so that each task's
    loss is a mean over its real tracks (pairs) whatever the padding."""
    import tensorflow as tf

    def normalised(mask):
        mask = tf.cast(mask, tf.float32)
        return mask / tf.maximum(tf.reduce_mean(mask), 1e-6)

    def split(inputs, labels, weights):
        x = tuple(inputs[:n_inputs])
        origin, vertex = inputs[n_inputs], inputs[n_inputs + 1]
        valid = tf.cast(x[-1], tf.bool)
        targets, sample_weights = {"probabilities": labels}, {"probabilities": weights}
        if "track_origin" in tasks:
            targets["track_origin"] = tf.maximum(tf.cast(origin, tf.int32), 0)
            sample_weights["track_origin"] = normalised(valid)
        if "track_vertex" in tasks:
            v = tf.cast(vertex, tf.int32)
            same = (v[:, :, None] == v[:, None, :]) & (v[:, :, None] >= 0)
            steps = tf.shape(v)[1]
            pairs = valid[:, :, None] & valid[:, None, :] & ~tf.eye(steps, dtype=tf.bool)
            targets["track_vertex"] = tf.cast(same, tf.float32)[..., None]
            sample_weights["track_vertex"] = normalised(pairs)
        order = ["probabilities", *(t for t in TASK_ORDER if t in tasks)]
        return x, tuple(targets[k] for k in order), tuple(sample_weights[k] for k in order)

    return dataset.map(split)
