"""A Keras loader that reads contiguous batches from `.npy` memmaps, never the whole array."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def open_split(directory: Path, split: str, node: str) -> dict[str, np.ndarray]:
    """Memory-map the inputs, labels and weights of one split (read-only, no pickle)."""
    return {
        "x": np.load(directory / f"{split}_{node}.npy", mmap_mode="r"),
        "y": np.load(directory / f"{split}_labels.npy", mmap_mode="r"),
        "w": np.load(directory / f"{split}_weights.npy", mmap_mode="r"),
    }


def make_loader(arrays: dict[str, np.ndarray], batch_size: int, seed: int | None):
    """A ``keras.utils.PyDataset`` over contiguous batches; batch order reshuffled each epoch
    when ``seed`` is given (the memmaps are already shuffled within blocks)."""
    import keras

    class MemmapBatches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__(workers=1, use_multiprocessing=False)
            self.n = len(arrays["y"])
            self.order = np.arange(self.num_batches)
            self.rng = np.random.default_rng(seed) if seed is not None else None
            self.on_epoch_end()

        @property
        def num_batches(self) -> int:
            return -(-self.n // batch_size)

        def __len__(self) -> int:
            return self.num_batches

        def __getitem__(self, index: int):
            start = int(self.order[index]) * batch_size
            stop = min(start + batch_size, self.n)
            return (
                np.asarray(arrays["x"][start:stop]),
                np.asarray(arrays["y"][start:stop], dtype=np.int32),
                np.asarray(arrays["w"][start:stop]),
            )

        def on_epoch_end(self) -> None:
            if self.rng is not None:
                self.rng.shuffle(self.order)

    return MemmapBatches()
