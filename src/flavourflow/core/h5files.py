"""HDF5 inputs opened with one-line errors, and the switch for HDF5 file locking.

A truncated or non-HDF5 file between stages otherwise surfaces as h5py's multi-line
``OSError: Unable to synchronously open file (truncated file: eof = ...)`` traceback.

File locking: HDF5 locks every file it opens, which fails (or hangs) on some shared
filesystems (older NFS, Lustre without flock). The workflow's ``hdf5_file_locking: false``
sets ``HDF5_USE_FILE_LOCKING=FALSE`` for every job, which the HDF5 library itself reads;
:func:`locking` reports the setting.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py

from flavourflow.core.errors import FlavourflowError

LOCKING_ENV = "HDF5_USE_FILE_LOCKING"


def locking() -> bool:
    """Whether HDF5 file locking is on (the HDF5 default) in this process."""
    return os.environ.get(LOCKING_ENV, "TRUE").strip().upper() not in ("FALSE", "0", "NO")


def open_h5(path: str | os.PathLike[str]) -> h5py.File:
    """``h5py.File(path, "r")``, or a one-line error naming ``path`` if it is missing, not
    HDF5 or truncated."""
    path = Path(path)
    if not path.is_file():
        raise FlavourflowError("no such file" if not path.exists() else "not a file",
                               path=path)
    try:
        return h5py.File(path, "r")
    except OSError as err:
        reason = str(err).split("(", 1)[-1].rstrip(")") if "(" in str(err) else str(err)
        raise FlavourflowError(f"not a readable HDF5 file ({reason})", path=path) from None
