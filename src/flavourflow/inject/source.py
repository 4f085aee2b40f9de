"""The original file's jets as the dump numbered them, for every format the dump reads.

inject aligns each dump row with a jet of the original file by (event number, jet index) and
checks its pT. This module reads, block by block and from the original file only, what that
needs: the event number of every entry, the jets per entry, their pT in the dump's units and
their index as the dump records it. The file is opened with the dump's own reader for its
format (:func:`flavourflow.dump.core.open_reader`), so the same file checks apply and the
branch names are found the same way:

* ``flavourflow`` (generated ntuple): TTree or RNTuple ``events``, ``eventNumber`` and
  ``jet_pt``; the jet index is the position in the event.
* ``physlite``: TTree ``CollectionTree`` or RNTuple ``EventData``, ``EventInfo`` event number
  and ``AnalysisJets`` pT; the jet index is the position in ``AnalysisJets``.
* ``mapping``: the mapping's tree, its ``eventNumber`` and ``pt`` fields (scale and default
  applied as the dump applies them). Jagged layout: the index is the position in the entry.
  Flat layout (one jet per entry): the index is the entry's position among the consecutive
  entries of its event (:func:`flavourflow.dump.mapping.run_index`), unless the mapping maps
  ``jetIndex`` to a branch, which is then read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from flavourflow.core.errors import FlavourflowError
from flavourflow.dump import blocks
from flavourflow.dump.core import open_reader


@dataclass
class Block:
    """One block of entries: event number per entry, jets per entry, and per jet (flat, in
    file order) its pT (float32, the dump's units) and its index as the dump records it."""

    events: np.ndarray
    counts: np.ndarray
    pt: np.ndarray
    jet_index: np.ndarray
    flat: bool = False


@dataclass
class Source:
    """Where the event number, the jet pT and (optionally) the jet index live in a file."""

    path: Path
    obj: Any
    store: str
    event_branch: str | None
    pt_branch: str
    pt_scale: float = 1.0
    pt_default: float | None = None
    event_default: int = 0
    index_branch: str | None = None
    mapped: bool = False

    @property
    def num_entries(self) -> int:
        return int(self.obj.num_entries)

    def blocks(self, step_size: int) -> Iterator[Block]:
        """Blocks of ``step_size`` entries, in file order."""
        branches = sorted({b for b in (self.event_branch, self.pt_branch, self.index_branch)
                           if b is not None})
        carry = None
        for block in blocks.iterate_checked(self.obj, branches, step_size, self.path,
                                            self.store, self._check):
            columns = blocks.Columns(block)
            n = len(block)
            events = (np.full(n, self.event_default, dtype=np.int64)
                      if self.event_branch is None
                      else blocks.flat(columns[self.event_branch]).astype(np.int64))
            pt_depth, _ = blocks._layers(ak.to_layout(block[self.pt_branch]).form)
            flat_layout = pt_depth == 0
            counts = (np.ones(n, dtype=np.int64) if flat_layout
                      else blocks.counts(columns[self.pt_branch]).astype(np.int64))
            if len(events) != n:
                raise FlavourflowError("not one event number per entry", path=self.path,
                                       field=self.event_branch)
            pt = blocks.flat(columns[self.pt_branch]).astype(np.float64) * self.pt_scale
            if self.pt_default is not None:
                pt = np.where(np.isnan(pt), self.pt_default, pt)
            if self.index_branch is not None:
                jet_index = blocks.flat(columns[self.index_branch]).astype(np.int64)
            elif flat_layout:
                from flavourflow.dump.mapping import run_index

                jet_index, carry = run_index(events, carry)
            else:
                offsets = blocks.flat_index(counts)
                jet_index = np.arange(int(counts.sum())) - np.repeat(offsets, counts)
            yield Block(events, counts, pt.astype(np.float32), jet_index, flat_layout)

    def _check(self, block: ak.Array) -> None:
        depth, _ = blocks._layers(ak.to_layout(block[self.pt_branch]).form)
        blocks.check_type(block[self.pt_branch], self.path, self.pt_branch,
                          depth if self.mapped and depth in (0, 1) else 1, "float")
        if self.event_branch is not None:
            blocks.check_type(block[self.event_branch], self.path, self.event_branch, 0, "int")


def open_source(path: Path, fmt: str = "flavourflow",
                mapping_file: Path | None = None) -> Source:
    """Open ``path`` (format ``fmt``, as the dump read it) for alignment; one-line errors."""
    reader = open_reader(Path(path), fmt, mapping_file)
    if fmt == "flavourflow":
        from flavourflow.dump.ntuple import TREE

        return Source(Path(path), reader.tree, TREE, "eventNumber", reader.pt_branch)
    if fmt == "physlite":
        return Source(Path(path), reader.obj, reader.storage,
                      reader.quantities["eventNumber"].branch, reader.pt_branch)
    mapping = reader.mapping
    event, pt = mapping.jets["eventNumber"], mapping.jets["pt"]
    index = mapping.jets.get("jetIndex")
    present = reader.present
    return Source(
        Path(path), reader.obj, mapping.tree,
        event.branch if event.branch in present else None, pt.branch, pt.scale, pt.default,
        int(event.default or 0),
        index.branch if index is not None and index.branch in present else None,
        mapped=True,
    )
