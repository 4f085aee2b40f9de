"""The dump stage: one ROOT ntuple -> one TDD-layout HDF5 file, streamed in event blocks."""

from __future__ import annotations

import logging
from pathlib import Path

from flavourflow.core.errors import FlavourflowError
from flavourflow.core.outputs import atomic_path
from flavourflow.dump import ntuple
from flavourflow.dump.h5 import TDDWriter

log = logging.getLogger(__name__)


def run(
    source: Path,
    output: Path,
    selection: ntuple.Selection,
    max_tracks: int,
    step_size: int,
    compression: str = "lzf",
) -> int:
    """Dump ``source`` to ``output``; return the number of jets written.

    Memory is bounded by ``step_size`` events whatever the file size. The output appears only
    when the whole file was converted and at least one jet passed the selection.
    """
    n_events = 0
    with atomic_path(output) as tmp:
        writer = TDDWriter(tmp, compression)
        try:
            for events in ntuple.iterate(source, step_size):
                n_events += len(events)
                jets, tracks = ntuple.convert(events, selection, max_tracks)
                if len(jets):
                    writer.append(jets, tracks)
            if writer.n == 0:
                raise FlavourflowError(
                    f"no jet passes the selection (pt > {selection.pt_min} MeV, "
                    f"|eta| < {selection.abs_eta_max}) in {n_events} events",
                    path=source, field="jet_pt",
                )
            writer.attrs(
                source_files=[str(source)], schema="flavourflow",
                selection={"pt_min": selection.pt_min, "abs_eta_max": selection.abs_eta_max},
                max_tracks=max_tracks, n_events=n_events,
            )
        finally:
            writer.close()
    log.info("dumped %d jets from %d events of %s", writer.n, n_events, source)
    return writer.n
