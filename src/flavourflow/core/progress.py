"""Progress of long jobs (events generated, dumped, jets scored, epochs trained), with tqdm.

One helper, :func:`bar` (and :func:`track` around a loop), so that every stage reports the
same way:

* when stderr is a terminal (a stage's CLI run by hand): tqdm's live bar, redrawn in place;
* otherwise (a Snakemake log file, a batch job's output): no bar, no carriage return and no
  cursor move, but whole lines through :mod:`logging` (so they carry its timestamp), at most
  one every ``FLAVOURFLOW_PROGRESS_INTERVAL`` seconds (default 10) and one at the end, e.g.::

      2026-12-06 13:02:11,304 flavourflow.progress INFO dump sample.root: 12000/50000 events
      (24%) in 00:10, 1191 events/s, 00:32 left, 8213 jets

  A job shorter than the interval writes none: a log gets progress where it helps.

``FLAVOURFLOW_PROGRESS=0`` (or tqdm's own ``TQDM_DISABLE=1``) silences both. Progress never
changes what a stage writes: the bars only count.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from tqdm import tqdm

#: Set to 0 (or off, false, no) to silence every progress report.
ENV = "FLAVOURFLOW_PROGRESS"
#: Seconds between two progress lines in a log (not a terminal).
ENV_INTERVAL = "FLAVOURFLOW_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 10.0
#: Where the progress lines of a log go (its name is part of each line).
LOGGER = logging.getLogger("flavourflow.progress")
T = TypeVar("T")


def enabled() -> bool:
    """False when ``FLAVOURFLOW_PROGRESS`` or ``TQDM_DISABLE`` switches progress off."""
    off = ("0", "off", "false", "no")
    if os.environ.get(ENV, "1").strip().lower() in off:
        return False
    return os.environ.get("TQDM_DISABLE", "").strip().lower() in ("", *off)


def interval() -> float:
    """Seconds between two progress lines in a log (``FLAVOURFLOW_PROGRESS_INTERVAL``)."""
    try:
        return max(0.0, float(os.environ.get(ENV_INTERVAL, DEFAULT_INTERVAL)))
    except ValueError:
        return DEFAULT_INTERVAL


def live() -> bool:
    """Whether progress is drawn as a live bar: stderr is a terminal."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


class _LogBar(tqdm):
    """tqdm writing log lines: one plain line per redraw (no bar), e.g. ``dump x.root:
    12000/50000 events (24%) in 00:10, 1191 events/s, 00:32 left, 8213 jets``; a slow job's
    rate reads ``45.2 s each`` (per epoch, per event). The closing line is left out when the
    last update already wrote the same count (one line, not two alike)."""

    @staticmethod
    def format_meter(n: float, total: float | None, elapsed: float, prefix: str = "",
                     unit: str = "it", unit_scale: bool = False, rate: float | None = None,
                     postfix: str | None = None, unit_divisor: int = 1000, initial: float = 0,
                     **_: Any) -> str:
        """The line for ``n`` of ``total`` ``unit`` done in ``elapsed`` seconds (``rate``:
        tqdm's smoothed rate; None: the average since the start)."""
        if rate is None and elapsed:
            rate = (n - initial) / elapsed

        def count(x: float) -> str:
            return tqdm.format_sizeof(x, divisor=unit_divisor) if unit_scale else f"{x:.0f}"

        space = "" if unit_scale else " "
        done = (f"{count(n)}/{count(total)}{space}{unit} ({100 * n / total:.0f}%)" if total
                else f"{count(n)}{space}{unit}")
        parts = [f"{prefix}: {done} in {tqdm.format_interval(elapsed)}"]
        if not rate:
            parts.append(f"?{space}{unit}/s")
        elif rate >= 1 or unit_scale:
            value = tqdm.format_sizeof(rate, divisor=unit_divisor) if unit_scale else (
                f"{rate:.0f}" if rate >= 100 else f"{rate:.3g}")
            parts.append(f"{value}{space}{unit}/s")
        else:
            parts.append(f"{1 / rate:.3g} s each")
        if total:
            left = (total - n) / rate if rate else None
            parts.append(f"{tqdm.format_interval(left) if left is not None else '?'} left")
        if postfix:
            parts.append(postfix)
        return ", ".join(parts)

    def moveto(self, n: int) -> None:
        """No cursor moves (tqdm's way of stacking nested bars): a log line has no place."""

    def close(self) -> None:
        if not self.disable and self.n == self.last_print_n:
            self.leave = False  # tqdm then clears the line instead: nothing reaches the log
        super().close()


class _LogLines:
    """A file for tqdm that turns each redraw into one log record: tqdm writes
    ``"\\r" + status + padding`` per redraw and a bare ``"\\n"`` at the end; only the status is
    kept, so a log gets whole lines and never a carriage return."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def write(self, text: str) -> None:
        line = text.strip("\r\n ")
        if line:
            self.logger.info("%s", line)

    def flush(self) -> None:
        pass


def bar(total: float | None = None, desc: str = "", unit: str = "it", *,
        initial: float = 0, unit_scale: bool = False, every: float | None = None,
        leave: bool = True, logger: logging.Logger = LOGGER) -> Any:
    """A tqdm bar for a job of ``total`` ``unit`` (None: unknown), described by ``desc``.

    A live bar on a terminal, log lines (see the module docstring) elsewhere; ``every``
    overrides the seconds between log lines (0: at each update, e.g. per epoch). Use it as a
    context manager (or close it) so that the last line is written; call ``update(n)`` as
    work is done. ``unit_scale`` prints 1.2M instead of 1200000 (e.g. for bytes).
    """
    common: dict[str, Any] = {
        "total": total, "desc": desc, "unit": unit, "initial": initial,
        "unit_scale": unit_scale, "unit_divisor": 1024 if unit_scale else 1000,
        "disable": not enabled(), "leave": leave,
    }
    if live():
        # a terminal that reports no width (a bare pseudo-terminal) would get an empty bar
        try:
            width = os.get_terminal_size(sys.stderr.fileno()).columns
        except (AttributeError, ValueError, OSError):
            width = 0
        return tqdm(file=sys.stderr, dynamic_ncols=width > 0, ncols=None if width else 100,
                    **common)
    seconds = interval() if every is None else every
    return _LogBar(
        file=_LogLines(logger), ascii=True, dynamic_ncols=False,
        # a line at most every `seconds`, checked at each update; none before `seconds` have
        # passed (a short job stays quiet), and the summary line at the end
        mininterval=seconds, miniters=1, delay=seconds, **common,
    )


def track(items: Iterable[T], total: float | None = None, desc: str = "", unit: str = "it",
          size: Callable[[T], float] | None = None, **options: Any) -> Iterator[T]:
    """Yield ``items``, counting each one (``size(item)`` units, default 1) once the loop body
    has processed it; ``options`` go to :func:`bar`."""
    with bar(total, desc, unit, **options) as progress:
        for item in items:
            yield item
            progress.update(size(item) if size is not None else 1)


def console() -> contextlib.AbstractContextManager:
    """Around a stage's CLI: on a terminal, log records are printed above the live bars
    (tqdm's logging redirect) instead of through them; elsewhere nothing changes."""
    if live() and enabled():
        from tqdm.contrib.logging import logging_redirect_tqdm

        return logging_redirect_tqdm()
    return contextlib.nullcontext()
