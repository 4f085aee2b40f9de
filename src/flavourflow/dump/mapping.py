"""Read any flat or jagged ntuple described by a YAML field mapping into TDD blocks.

The mapping names, for each output field, the branch it comes from, a unit scale and a
default; nothing in it is evaluated. Example (GeV ntuple, one event per entry)::

    tree: nominal                 # TTree or RNTuple name
    d0_sign: atlas                # d0 in the ATLAS perigee convention (default) or flavourflow
    jets:
      pt: {branch: jet_pt, scale: 1000.0}          # GeV -> MeV
      eta: jet_eta                                 # shorthand for {branch: jet_eta}
      phi: jet_phi
      mass: {branch: jet_m, scale: 1000.0, default: .nan}
      HadronConeExclTruthLabelID: jet_truthflav
      eventNumber: eventNumber                     # one value per event: copied to its jets
      mcEventWeight: {branch: weight_mc, default: 1.0}
      DL1r_pb: jet_DL1r_pb                         # any other name: an extra jet field
      n_hits: {branch: jet_nhits, type: int}
    tracks:                                        # optional; one list per jet
      pt: {branch: jet_trk_pt, scale: 1000.0}
      eta: jet_trk_eta
      phi: jet_trk_phi
      charge: {branch: jet_trk_charge, default: 0}
      d0: jet_trk_d0
      z0SinTheta: jet_trk_z0sintheta
      d0Uncertainty: jet_trk_d0_err
      z0SinThetaUncertainty: jet_trk_z0sintheta_err

Layout: *jagged* when ``jets.pt`` holds a list per entry (one event per entry; event-level
branches are copied to the event's jets, track branches hold a list of lists), *flat* when it
holds a number (one jet per entry; track branches hold one list). A field without ``default``
is required: a missing branch is an error. With ``default``, a missing branch gives that
value everywhere and NaN values read are replaced by it. ``scale`` multiplies floats only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import awkward as ak
import jsonschema
import numpy as np
import uproot
import yaml

from flavourflow.core.errors import FlavourflowError
from flavourflow.core.flavours import LABEL_FIELD
from flavourflow.dump import blocks
from flavourflow.dump.blocks import JET_DTYPE, TRACK_INPUTS, Selection

#: Jet fields a mapping must provide (a branch or a default).
REQUIRED_JET_FIELDS = ("pt", "eta", "phi", LABEL_FIELD, "eventNumber")
#: Track fields a mapping with a `tracks` section must provide.
REQUIRED_TRACK_FIELDS = ("pt", "eta", "phi", "d0", "z0SinTheta", "d0Uncertainty",
                         "z0SinThetaUncertainty")

_FIELD = {
    "oneOf": [
        {"type": "string", "minLength": 1},
        {"type": "object", "additionalProperties": False, "required": ["branch"],
         "properties": {
             "branch": {"type": "string", "minLength": 1},
             "scale": {"type": "number"},
             "default": {"type": ["number", "boolean"]},
             "type": {"enum": ["float", "int"]},
         }},
    ],
}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["tree", "jets"],
    "properties": {
        "tree": {"type": "string", "minLength": 1},
        "d0_sign": {"enum": ["atlas", "flavourflow"]},
        "jets": {"type": "object", "minProperties": 1,
                 "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
                                   "not": {"enum": list(blocks.COMPUTED_JET_FIELDS)}},
                 "additionalProperties": _FIELD},
        "tracks": {"type": "object", "propertyNames": {"enum": list(TRACK_INPUTS)},
                   "additionalProperties": _FIELD},
    },
}


@dataclass(frozen=True)
class Field:
    """One output field: where it comes from and how it is transformed."""

    name: str
    branch: str
    scale: float = 1.0
    default: float | None = None
    dtype: np.dtype = field(default_factory=lambda: np.dtype("f4"))

    @property
    def required(self) -> bool:
        return self.default is None


@dataclass
class Mapping:
    """A parsed, validated field mapping."""

    source: Path
    tree: str
    jets: dict[str, Field]
    tracks: dict[str, Field]
    d0_sign: str = "atlas"
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def extra_fields(self) -> dict[str, np.dtype]:
        return {name: f.dtype for name, f in self.jets.items() if name not in JET_DTYPE.names}


def load(path: Path) -> Mapping:
    """Read and validate a mapping file; one-line errors naming the file and the key."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise FlavourflowError(f"cannot read mapping: {' '.join(str(err).split())}",
                               path=path) from None
    try:
        jsonschema.validate(raw, SCHEMA)
    except jsonschema.ValidationError as err:
        where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        raise FlavourflowError(f"invalid mapping: {err.message}", path=path,
                               field=where) from None

    def parse(section: str, name: str, spec: Any) -> Field:
        spec = {"branch": spec} if isinstance(spec, str) else dict(spec)
        known = JET_DTYPE if section == "jets" else blocks.TRACK_DTYPE
        if name in (known.names or ()):
            dtype = known[name]
            if "type" in spec and (spec["type"] == "int") != (dtype.kind == "i"):
                raise FlavourflowError(f"{name} is a {dtype} field, not {spec['type']}",
                                       path=path, field=f"{section}.{name}.type")
        else:
            dtype = np.dtype("i4" if spec.get("type") == "int" else "f4")
        if "scale" in spec and dtype.kind != "f":
            raise FlavourflowError("scale applies to float fields only", path=path,
                                   field=f"{section}.{name}.scale")
        default = spec.get("default")
        return Field(name, spec["branch"], float(spec.get("scale", 1.0)),
                     None if default is None else float(default), dtype)

    jets = {name: parse("jets", name, spec) for name, spec in raw["jets"].items()}
    if "jetIndex" in jets and jets["jetIndex"].default is not None:
        raise FlavourflowError("jetIndex takes no default: it identifies each jet for inject "
                               "(leave it out to number the jets of each event)", path=path,
                               field="jets.jetIndex.default")
    tracks = {name: parse("tracks", name, spec)
              for name, spec in (raw.get("tracks") or {}).items()}
    for section, fields, required in (("jets", jets, REQUIRED_JET_FIELDS),
                                      ("tracks", tracks, REQUIRED_TRACK_FIELDS)):
        if section == "tracks" and not fields:
            continue
        for name in required:
            if name not in fields:
                raise FlavourflowError("required field not mapped", path=path,
                                       field=f"{section}.{name}")
    return Mapping(Path(path), raw["tree"], jets, tracks, raw.get("d0_sign", "atlas"), raw)


@dataclass
class Reader:
    """A ntuple opened for streaming through a mapping."""

    path: Path
    obj: object
    mapping: Mapping
    present: set[str]
    flat: bool | None = None
    #: (event number, next jet index) of the last entry converted (flat layout)
    carry: tuple[int, int] | None = None

    @property
    def pt_branch(self) -> str:
        return self.mapping.jets["pt"].branch

    @property
    def extra_fields(self) -> dict[str, np.dtype]:
        return self.mapping.extra_fields

    def _fields(self) -> list[Field]:
        return [*self.mapping.jets.values(), *self.mapping.tracks.values()]

    def blocks(self, step_size: int) -> Iterator[ak.Array]:
        branches = sorted({f.branch for f in self._fields() if f.branch in self.present})
        yield from blocks.iterate_checked(self.obj, branches, step_size, self.path,
                                          self.mapping.tree, self._check)

    def _check(self, block: ak.Array) -> None:
        """Detect flat vs jagged from jets.pt and check every branch's type against it."""
        pt = self.mapping.jets["pt"]
        depth, _ = blocks._layers(block[pt.branch].layout.form)
        if depth not in (0, 1):
            blocks.check_type(block[pt.branch], self.path, pt.branch, 1, "float")
        self.flat = depth == 0
        jet_depth = 0 if self.flat else 1
        if self.flat:  # a list per entry elsewhere: pt, not that branch, is the odd one out
            for f in self.mapping.jets.values():
                if f.branch in self.present and blocks._layers(
                        block[f.branch].layout.form)[0] == 1:
                    raise FlavourflowError(
                        f"jets.pt is mapped to a branch with one number per entry (a flat "
                        f"ntuple), but jets.{f.name} ({f.branch}) holds a list per entry: is "
                        "pt mapped to the right branch?", path=self.path, field=pt.branch)
        for f in self.mapping.jets.values():
            if f.branch not in self.present:
                continue
            found, _ = blocks._layers(block[f.branch].layout.form)
            expected = 0 if (found == 0 and not self.flat) else jet_depth  # event-level
            blocks.check_type(block[f.branch], self.path, f.branch, expected,
                              "int" if f.dtype.kind == "i" else "float")
        for f in self.mapping.tracks.values():
            if f.branch in self.present:
                blocks.check_type(block[f.branch], self.path, f.branch, jet_depth + 1,
                                  "float")

    def _column(self, block: ak.Array, f: Field, event_of: np.ndarray, length: int,
                depth: int) -> np.ndarray:
        """Values of field ``f`` for every jet (depth 1) or track (depth 2): float64, scaled,
        NaN -> default; integer fields as int64 with NaN -> default or -1."""
        if f.branch not in self.present:
            return np.full(length, f.default,
                           dtype=np.int64 if f.dtype.kind == "i" else np.float64)
        array = block[f.branch]
        found, _ = blocks._layers(array.layout.form)
        if depth == 1 and found == 0 and not self.flat:  # one value per event: to its jets
            values = ak.to_numpy(array)[event_of]
        else:
            values = ak.to_numpy(ak.flatten(array, axis=None))
        if len(values) != length:
            raise FlavourflowError(f"{len(values)} values in a block where the mapping's "
                                   f"pt has {length}", path=self.path, field=f.branch)
        if f.dtype.kind == "i" and values.dtype.kind in "iub":
            return values.astype(np.int64)
        values = values.astype(np.float64) * (f.scale if f.dtype.kind == "f" else 1.0)
        if f.default is not None:
            values = np.where(np.isnan(values), f.default, values)
        if f.dtype.kind == "i":
            return np.nan_to_num(values, nan=-1.0).astype(np.int64)
        return values

    def convert(self, block: ak.Array, selection: Selection,
                max_tracks: int) -> tuple[np.ndarray, np.ndarray]:
        m = self.mapping
        n_events = len(block)
        n_jets = (np.ones(n_events, dtype=np.int64) if self.flat
                  else ak.to_numpy(ak.num(block[m.jets["pt"].branch])))
        event_of = np.repeat(np.arange(n_events), n_jets)
        n_all = int(n_jets.sum())
        jets = {name: self._column(block, f, event_of, n_all, 1)
                for name, f in m.jets.items()}
        keep = selection.keep(jets["pt"], jets["eta"])
        out = {name: values[keep] for name, values in jets.items()}
        if "jetIndex" not in out:
            if self.flat:  # the entry's place among the consecutive entries of its event
                index, self.carry = run_index(jets["eventNumber"], self.carry)
            else:
                index = np.arange(n_all) - blocks.flat_index(n_jets)[event_of]
            out["jetIndex"] = index[keep]
        if m.tracks:
            per_jet = block[m.tracks["pt"].branch]
            counts_all = ak.to_numpy(ak.num(per_jet, axis=1) if self.flat
                                     else ak.flatten(ak.num(per_jet, axis=2)))
            n_trk = int(counts_all.sum())
            trk = {name: self._column(block, f, event_of, n_trk, 2)
                   for name, f in m.tracks.items()}
            trk_keep = np.repeat(keep, counts_all)
            tracks = {name: trk[name][trk_keep] if name in trk else np.full(n_trk, np.nan)
                      [trk_keep] for name in TRACK_INPUTS}
            if m.d0_sign == "atlas":
                tracks["d0"] = -tracks["d0"]
            counts = counts_all[keep]
        else:
            counts = np.zeros(int(keep.sum()), dtype=np.int64)
            tracks = {name: np.zeros(0) for name in TRACK_INPUTS}
        return blocks.build(out, counts, tracks, max_tracks,
                            blocks.jet_dtype(self.extra_fields))

    def provenance(self) -> dict[str, object]:
        return {"schema": "mapping", "mapping_file": str(self.mapping.source),
                "mapping": json.dumps(self.mapping.raw, sort_keys=True),
                "layout": "flat" if self.flat else "jagged",
                "d0_sign": f"flavourflow (read as {self.mapping.d0_sign})"}


def run_index(events: np.ndarray, carry: tuple[int, int] | None,
              ) -> tuple[np.ndarray, tuple[int, int] | None]:
    """Jet index of each entry of a flat (one jet per entry) ntuple: its position among the
    consecutive entries with its event number, continuing ``carry`` (the previous block's
    last event number and next index), so that blocks of any size number the jets the same.
    Returns the indices and the carry for the next block. inject numbers the original's jets
    with the same function, which is what lets it align a flat ntuple by event and jet."""
    n = len(events)
    if n == 0:
        return np.zeros(0, dtype=np.int64), carry
    new_run = np.ones(n, dtype=bool)
    new_run[1:] = events[1:] != events[:-1]
    starts = np.flatnonzero(new_run)
    run_of = np.cumsum(new_run) - 1
    index = np.arange(n, dtype=np.int64) - starts[run_of]
    if carry is not None and int(events[0]) == carry[0]:
        index[run_of == 0] += carry[1]
    return index, (int(events[-1]), int(index[-1]) + 1)


def open_file(path: Path, mapping: Mapping) -> Reader:
    """Open ``path`` and check the mapping's branches exist (those with a default may not)."""
    try:
        file = uproot.open(path, array_cache=blocks.READ_CACHE)
        if mapping.tree not in file:
            raise FlavourflowError("no such tree in file", path=path, field=mapping.tree)
        obj = file[mapping.tree]
        present = set(obj.keys())
        n_entries = obj.num_entries
    except FlavourflowError:
        raise
    except Exception as err:
        raise FlavourflowError(f"not a readable ROOT file ({type(err).__name__}: {err})",
                               path=path) from None
    for section in (mapping.jets, mapping.tracks):
        for f in section.values():
            if f.branch not in present and f.required:
                raise FlavourflowError("missing branch", path=path, field=f.branch)
    if mapping.tracks and mapping.tracks["pt"].branch not in present:
        raise FlavourflowError("missing branch", path=path, field=mapping.tracks["pt"].branch)
    if n_entries == 0:
        raise FlavourflowError("tree has zero events", path=path, field=mapping.tree)
    return Reader(Path(path), obj, mapping, present)
