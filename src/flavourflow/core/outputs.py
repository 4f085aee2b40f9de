"""Atomic outputs: a stage writes next to the target and renames only on success,
so that a failure never leaves a partial file behind.

The temporary is ``.<stem>.partial-<pid><suffix>`` beside the target. It is removed when the
stage fails or is stopped by SIGTERM or SIGINT (the CLI turns both into an exit that runs the
clean-up); one left by a process killed outright (SIGKILL, a node lost) is removed by the next
run writing the same target, once no live process on this machine has its pid.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flavourflow.core.errors import FlavourflowError

#: errno values that mean "this location cannot take the output" (not "an input is bad").
_WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES,
                 errno.EPERM}
_WRITE_WORDS = ("no space left", "file too large", "disk quota", "read-only file system",
                "permission denied")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_partials(target: Path) -> list[Path]:
    """Remove the temporaries of ``target`` left by processes that no longer run (killed
    with SIGKILL); return what was removed."""
    pattern = re.compile(rf"^\.{re.escape(target.stem)}\.partial-(\d+){re.escape(target.suffix)}$")
    removed = []
    with contextlib.suppress(OSError):
        for path in target.parent.iterdir():
            match = pattern.match(path.name)
            if match and int(match.group(1)) != os.getpid() and not _pid_alive(
                    int(match.group(1))):
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed.append(path)
    return removed


def check_output(target: str | os.PathLike[str], *inputs: str | os.PathLike[str] | None,
                 ) -> Path:
    """Refuse, before any work, an output that would overwrite one of ``inputs`` or that cannot
    be written: a folder, under a file, in a folder that cannot be created or written."""
    target = Path(target)
    for source in inputs:
        if source is None:
            continue
        same = Path(source).resolve() == target.resolve()
        with contextlib.suppress(OSError):
            same = same or target.samefile(source)
        if same:
            raise FlavourflowError("output is the input: refusing to overwrite it",
                                   path=target)
    if target.is_dir():
        raise FlavourflowError("output is a folder, not a file", path=target)
    parent = target.parent
    for folder in (parent, *parent.parents):
        if folder.exists():
            if not folder.is_dir():
                raise FlavourflowError(f"{folder} is a file, not a folder", path=target)
            break
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise FlavourflowError(f"cannot create the output folder ({err.strerror})",
                               path=target) from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise FlavourflowError("output folder is not writable", path=target)
    return target


def _write_failure(err: OSError | RuntimeError) -> bool:
    """Whether ``err`` (from any library writing the temporary) says the location is full,
    read-only, too small (ulimit -f) or forbidden."""
    if getattr(err, "errno", None) in _WRITE_ERRNOS:
        return True
    text = str(err).lower()
    return any(word in text for word in _WRITE_WORDS)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` if the block succeeds.

    The location is checked first (:func:`check_output`); a full, read-only or size-limited
    location becomes a one-line error naming ``target``; stale temporaries of ``target`` from
    killed runs are removed."""
    target = check_output(target)
    remove_stale_partials(target)
    tmp = target.with_name(f".{target.stem}.partial-{os.getpid()}{target.suffix}")
    try:
        yield tmp
        os.replace(tmp, target)
    except (OSError, RuntimeError) as err:  # h5py reports some failed writes as RuntimeError
        about_input = getattr(err, "filename", None) not in (None, str(tmp), str(target))
        if _write_failure(err) and not about_input:
            code = getattr(err, "errno", None)
            reason = os.strerror(code) if code in _WRITE_ERRNOS else next(
                (w for w in _WRITE_WORDS if w in str(err).lower()), str(err))
            raise FlavourflowError(f"cannot write the output ({reason})", path=target) from None
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(target: str | os.PathLike[str], payload: Any) -> None:
    """Write ``payload`` as indented JSON, atomically; NaN is refused (lwtnn and JSON reject it)."""
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
