"""Atomic outputs: a stage writes next to the target and renames only on success,
so that a failure never leaves a partial file behind."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.partial-{os.getpid()}{target.suffix}")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(target: str | os.PathLike[str], payload: Any) -> None:
    """Write ``payload`` as indented JSON, atomically; NaN is refused (lwtnn and JSON reject it)."""
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
