"""The one error type stages raise for bad input; the CLI prints it as one line and exits 1."""

from __future__ import annotations


class FlavourflowError(Exception):
    """Bad input or a failed check. ``str()`` is one line naming the file and the field."""

    def __init__(self, message: str, *, path: object | None = None, field: str | None = None):
        parts = [str(path)] if path is not None else []
        if field is not None:
            parts.append(f"field '{field}'")
        prefix = ": ".join(parts)
        message = " ".join(str(message).split())  # always one line
        super().__init__(f"{prefix}: {message}" if prefix else message)
