"""How the dump's inner loops are compiled, and the one that only moves bytes.

The loops that run per track or per byte (track building, the IP and SV baselines, the
PHYSLITE ghost-track links, the LZF encoders) are plain Python functions compiled by numba
with :data:`kernel`: the same code path however and from wherever flavourflow is installed,
no C compiler and no ABI to keep in step. They take numpy arrays, never pointers: every
index is checked (``boundscheck``: an out-of-range one raises IndexError instead of writing
past an array), records are addressed by field name (the dtype's field order does not
matter), and each kernel's Python wrapper checks its inputs fit together before the call,
with a one-line ValueError. They run without the GIL (``nogil``), so the dump's read-ahead
thread reads the next block meanwhile; ``cache`` keeps the machine code next to the module (or
in numba's user-wide cache where that is not writable), so only the first run after a change
compiles. Floating-point errors follow numpy (``error_model="numpy"``: x/0 is inf or NaN, not
an exception), and nothing is reassociated or fused (no ``fastmath``), so the results are the
bytes of the arithmetic as written.
"""

from __future__ import annotations

from collections.abc import Mapping

import numba
import numpy as np

#: The decorator of every dump kernel (see the module's docstring).
kernel = numba.njit(nogil=True, cache=True, boundscheck=True, error_model="numpy")
#: What compiled the kernels, for the dump's provenance (the `kernels` attribute).
PROVENANCE = f"numba {numba.__version__}"


@kernel
def _interleave(out: np.ndarray, columns: tuple, offsets: np.ndarray) -> None:
    for f in range(len(columns)):
        column, at = columns[f], offsets[f]
        size = column.shape[1]
        for i in range(out.shape[0]):
            for b in range(size):
                out[i, at + b] = column[i, b]


def interleave(out: np.ndarray, columns: Mapping[str, np.ndarray]) -> None:
    """``out[name] = values`` for each column, in one GIL-free call: numpy's assignment of each
    field took the GIL back from the reading thread twenty-odd times per block (each time a
    wait of up to 5 ms)."""
    if out.ndim != 1 or not out.flags.c_contiguous:
        raise ValueError("interleave needs a 1-D contiguous array of records")
    n = len(out)
    cols, offsets = [], []
    for name, values in columns.items():
        values = np.ascontiguousarray(values, dtype=out.dtype[name])
        if values.shape != (n,):
            raise ValueError(f"column {name!r} has shape {values.shape}, for {n} records")
        cols.append(values.view(np.uint8).reshape(n, values.itemsize))
        offsets.append(out.dtype.fields[name][1])
    if cols:
        _interleave(out.view(np.uint8).reshape(n, out.itemsize), tuple(cols),
                    np.array(offsets, dtype=np.int64))
