"""A Keras loader that reads contiguous batches from the `.npy` memmaps, never whole arrays.

The preprocess stage wrote every split in a uniformly shuffled order, so a batch can be a
contiguous slice (one sequential read per memmap); only the order of the batches changes from
epoch to epoch, drawn from (seed, epoch) so that a run resumed at epoch k sees the batches an
uninterrupted run would.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from flavourflow.core.errors import FlavourflowError


def open_split(directory: Path, split: str, names: Sequence[str]) -> dict:
    """Memory-map the inputs (``names``, in the model's input order), labels and weights of
    one split (read-only, no pickle); all must have the same number of rows."""
    arrays = {}
    for name in [*names, "labels", "weights"]:
        path = directory / f"{split}_{name}.npy"
        if not path.is_file():
            raise FlavourflowError("missing preprocessed array", path=path)
        arrays[name] = np.load(path, mmap_mode="r", allow_pickle=False)
    rows = {len(a) for a in arrays.values()}
    if len(rows) != 1:
        raise FlavourflowError(f"arrays of split {split} have different lengths {rows}",
                               path=directory)
    return {"x": [arrays[n] for n in names], "y": arrays["labels"], "w": arrays["weights"]}


def make_loader(arrays: dict, batch_size: int, seed: int | None, workers: int = 1):
    """A ``keras.utils.PyDataset`` of contiguous batches ``(inputs, labels, weights)``; the
    batch order is a permutation drawn from (``seed``, epoch) when ``seed`` is given (set the
    epoch with ``set_epoch``), the file order otherwise."""
    import keras

    class MemmapBatches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__(workers=workers, use_multiprocessing=False)
            self.n = len(arrays["y"])
            self.order = np.arange(self.num_batches)
            self.set_epoch(0)

        @property
        def num_batches(self) -> int:
            return -(-self.n // batch_size)

        def set_epoch(self, epoch: int) -> None:
            if seed is not None:
                self.order = np.random.default_rng([seed, epoch]).permutation(self.num_batches)

        def __len__(self) -> int:
            return self.num_batches

        def __getitem__(self, index: int):
            start = int(self.order[index]) * batch_size
            stop = min(start + batch_size, self.n)
            x = tuple(np.asarray(a[start:stop]) for a in arrays["x"])
            return (
                x if len(x) > 1 else x[0],
                np.asarray(arrays["y"][start:stop], dtype=np.int32),
                np.asarray(arrays["w"][start:stop]),
            )

    return MemmapBatches()
