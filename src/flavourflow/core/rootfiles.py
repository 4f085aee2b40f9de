"""A ROOT file's header checked before uproot reads it, so that an empty, truncated or
non-ROOT file is named as such in one line (uproot says e.g. "expected Chunk of length ...")."""

from __future__ import annotations

import struct
from pathlib import Path

from flavourflow.core.errors import FlavourflowError

#: ROOT's file header: "root", fVersion, fBEGIN, fEND (4 bytes; 8 when fVersion >= 1000000).
_MAGIC = b"root"


def check_root_file(path: Path) -> None:
    """Raise a one-line error naming ``path`` unless it is a ROOT file as long as its header
    says (missing, a folder, empty, another format, or truncated)."""
    path = Path(path)
    if not path.exists():
        raise FlavourflowError("no such file", path=path)
    if path.is_dir():
        raise FlavourflowError("is a folder, not a ROOT file", path=path)
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(20)
    except OSError as err:
        raise FlavourflowError(f"cannot read the file ({err.strerror})", path=path) from None
    if size == 0:
        raise FlavourflowError("empty file (0 bytes), not a ROOT file", path=path)
    if head[:4] != _MAGIC:
        kind = "an HDF5 file" if head.startswith(b"\x89HDF") else f"starts with {head[:8]!r}"
        raise FlavourflowError(f"not a ROOT file ({kind})", path=path)
    if len(head) < 16:
        raise FlavourflowError(f"truncated ROOT file ({size} bytes: not even a header)",
                               path=path)
    version = struct.unpack(">i", head[4:8])[0]
    end = (struct.unpack(">q", head[12:20])[0] if version >= 1_000_000
           else struct.unpack(">i", head[12:16])[0])
    if size < end:
        raise FlavourflowError(f"truncated ROOT file ({size} of {end} bytes)", path=path)
