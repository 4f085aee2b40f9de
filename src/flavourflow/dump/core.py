"""The dump stage: one ROOT file -> one TDD-layout HDF5 file, streamed in event blocks.

Input formats (``--format``): ``flavourflow`` (the generated ntuple,
:mod:`~flavourflow.dump.ntuple`), ``physlite`` (ATLAS PHYSLITE, TTree or RNTuple,
:mod:`~flavourflow.dump.physlite`) and ``mapping`` (any flat or jagged ntuple described by a
YAML field mapping, :mod:`~flavourflow.dump.mapping`). Each reader streams blocks and converts
them to the same `jets` / `tracks` blocks; this module writes them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Protocol

import awkward as ak
import numpy as np

from flavourflow.core import progress
from flavourflow.core.errors import FlavourflowError
from flavourflow.core.outputs import atomic_path, check_output
from flavourflow.core.rootfiles import check_root_file
from flavourflow.dump import kernels, ntuple
from flavourflow.dump.blocks import Selection
from flavourflow.dump.h5 import DEFAULT_COMPRESSION, TDDWriter

log = logging.getLogger(__name__)

FORMATS = ("flavourflow", "physlite", "mapping")


class Reader(Protocol):
    """What the dump needs from an input format."""

    path: Path

    @property
    def pt_branch(self) -> str: ...

    def blocks(self, step_size: int) -> Iterator[ak.Array]: ...

    def convert(self, block: ak.Array, selection: Selection,
                max_tracks: int) -> tuple[np.ndarray, np.ndarray]: ...

    def provenance(self) -> dict[str, object]: ...


def open_reader(source: Path, fmt: str = "flavourflow",
                mapping_file: Path | None = None) -> Reader:
    """The reader of ``fmt`` on ``source``; it checks the file before any output exists."""
    check_root_file(source)
    if fmt == "flavourflow":
        return ntuple.Reader(source)
    if fmt == "physlite":
        from flavourflow.dump import physlite

        return physlite.open_file(source)
    if fmt == "mapping":
        from flavourflow.dump import mapping

        if mapping_file is None:
            raise FlavourflowError("format 'mapping' needs a mapping file", path=source,
                                   field="mapping")
        return mapping.open_file(source, mapping.load(mapping_file))
    raise FlavourflowError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}",
                           path=source, field="format")


def _n_entries(reader: Reader) -> int | None:
    """Events in the reader's tree or RNTuple (the progress total), None if it does not say."""
    store = getattr(reader, "tree", None)
    store = getattr(reader, "obj", None) if store is None else store
    n = getattr(store, "num_entries", None)
    return None if n is None else int(n)


def check_numbers(max_tracks: int, step_size: int, selection: Selection) -> None:
    """One-line errors for numbers that make no sense, before any file is opened."""
    for name, value in (("max-tracks", max_tracks), ("step-size", step_size)):
        if not value >= 1:
            raise FlavourflowError(f"--{name} must be at least 1, not {value}", field=name)
    if not selection.pt_min >= 0:
        raise FlavourflowError(f"--pt-min must be >= 0 MeV, not {selection.pt_min}",
                               field="pt-min")
    if not selection.abs_eta_max > 0:
        raise FlavourflowError(f"--abs-eta-max must be > 0, not {selection.abs_eta_max}",
                               field="abs-eta-max")


def _said_out_loud(reader: Reader, provenance: dict, source: Path) -> dict[str, str]:
    """What would otherwise be silent, logged as a warning and recorded in the h5: PHYSLITE
    b-tagging links that point nowhere (their tagger outputs are NaN), the point the track
    impact parameters are measured from, and mapped fields filled with their default because
    their branch is not in the file (a misspelt branch would otherwise look all-default)."""
    extra: dict[str, str] = {}
    links = provenance.get("links") or {}
    lost = int(links.get("btagging", 0)) - int(links.get("btagging_valid", 0))
    if lost > 0:
        log.warning("%s: %d of %d b-tagging links point nowhere: their tagger outputs are NaN",
                    source, lost, links["btagging"])
    quantities = getattr(reader, "quantities", None)
    if quantities is not None:  # PHYSLITE: where d0 and z0 are measured from
        if "pv_z" not in quantities:
            extra["d0_reference"] = "beam line (no primary vertices in the file)"
        elif "beam_x" not in quantities:
            extra["d0_reference"] = ("beam line for d0 (no beam-spot position in the file); "
                                     "z0 from the primary vertex")
        else:
            extra["d0_reference"] = "primary vertex"
        if extra["d0_reference"] != "primary vertex":
            log.warning("%s: %s", source, extra["d0_reference"])
    mapping = getattr(reader, "mapping", None)
    if mapping is not None:
        missing = sorted(f"{f.name} <- {f.branch}"
                         for f in (*mapping.jets.values(), *mapping.tracks.values())
                         if f.branch not in reader.present)
        if missing:
            extra["defaulted_fields"] = ", ".join(missing)
            log.warning("%s: no branch for %s: filled with the mapping's default", source,
                        extra["defaulted_fields"])
    return extra


def run(
    source: Path,
    output: Path,
    selection: Selection,
    max_tracks: int,
    step_size: int,
    compression: str = DEFAULT_COMPRESSION,
    fmt: str = "flavourflow",
    mapping_file: Path | None = None,
) -> int:
    """Dump ``source`` to ``output``; return the number of jets written.

    Memory is bounded by ``step_size`` events whatever the file size. The output appears only
    when the whole file was converted and at least one jet passed the selection.
    """
    check_numbers(max_tracks=max_tracks, step_size=step_size, selection=selection)
    check_output(output, source, mapping_file)
    reader = open_reader(Path(source), fmt, mapping_file)
    n_events = 0
    with atomic_path(output) as tmp, ThreadPoolExecutor(1, "dump-read") as pool, \
            progress.bar(_n_entries(reader), f"dump {Path(source).name}", "events") as done:
        writer = TDDWriter(tmp, compression)
        blocks = reader.blocks(step_size)
        reading: Future = pool.submit(next, blocks, None)
        try:
            # The next block is read while this one is converted and written (the compiled
            # kernels and uproot's decompression release the GIL); at most two blocks are
            # alive at once, whatever the file size. Writing stays in this thread: its
            # (encoded) chunks are cheap to write, and its temporaries in a second thread
            # fragmented the heap (resident memory crept up with the number of blocks).
            while (events := reading.result()) is not None:
                reading = pool.submit(next, blocks, None)
                n_events += len(events)
                jets, tracks = reader.convert(events, selection, max_tracks)
                if len(jets):
                    writer.append(jets, tracks)
                done.set_postfix_str(f"{writer.n} jets", refresh=False)
                done.update(len(events))
            if writer.n == 0:
                raise FlavourflowError(
                    f"no jet passes the selection (pt > {selection.pt_min} MeV, "
                    f"|eta| < {selection.abs_eta_max}) in {n_events} events",
                    path=source, field=reader.pt_branch,
                )
            provenance = reader.provenance()
            writer.attrs(
                source_files=[str(source)], selection=selection.as_dict(),
                max_tracks=max_tracks, n_events=n_events, step_size=step_size,
                kernels=kernels.PROVENANCE,
                **provenance, **_said_out_loud(reader, provenance, Path(source)),
            )
        except BaseException:
            wait([reading])  # never close the file under a running read
            with contextlib.suppress(Exception):  # the first error is the one to report
                writer.close()
            raise
        wait([reading])
        writer.close()
    log.info("dumped %d jets from %d events of %s", writer.n, n_events, source)
    return writer.n
