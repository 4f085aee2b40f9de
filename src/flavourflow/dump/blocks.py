"""What every input format shares: the TDD dtypes, the jet selection, the conversion of
selected jets and their tracks into the padded TDD blocks, and the checks of branch types.

Readers (:mod:`~flavourflow.dump.ntuple`, :mod:`~flavourflow.dump.physlite`,
:mod:`~flavourflow.dump.mapping`) deliver flat numpy columns: one value per selected jet, and
one value per track with the number of tracks of each jet. :func:`build` then computes the
lifetime-signed impact-parameter significances, orders and pads the tracks as the
training-dataset-dumper does, and adds the IP and SV baselines, so that every format gets the
same physics.

Sign convention of ``d0`` (all formats): ``d0 = x sin(phi) - y cos(phi)`` of the point of
closest approach, the ATLAS perigee d0 negated (see :mod:`flavourflow.generate.tracks`);
readers of ATLAS inputs flip it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from flavourflow.core.errors import FlavourflowError
from flavourflow.core.flavours import LABEL_FIELD
from flavourflow.dump import kernels, taggers, vertexing
from flavourflow.dump.kernels import kernel

JET_DTYPE = np.dtype([
    ("pt", "f4"), ("eta", "f4"), ("phi", "f4"), ("mass", "f4"),
    ("eventNumber", "i8"), ("jetIndex", "i4"), ("mcEventWeight", "f4"),
    (LABEL_FIELD, "i4"), ("HadronConeExclTruthLabelPt", "f4"),
    ("HadronConeExclTruthLabelLxy", "f4"), ("n_tracks", "i4"),
    ("ip2d_llr", "f4"), ("sv_sig", "f4"), ("sv_Lxy", "f4"), ("sv_mass", "f4"),
    ("sv_efrac", "f4"), ("sv_ntrk", "i4"), ("sv_n2trk", "i4"),
])
TRACK_DTYPE = np.dtype([
    ("pt", "f4"), ("eta", "f4"), ("phi", "f4"), ("deta", "f4"), ("dphi", "f4"), ("dr", "f4"),
    ("ptfrac", "f4"), ("charge", "i1"), ("d0", "f4"), ("z0SinTheta", "f4"),
    ("d0Uncertainty", "f4"), ("z0SinThetaUncertainty", "f4"),
    ("IP3D_signed_d0_significance", "f4"), ("IP3D_signed_z0_significance", "f4"),
    ("valid", "?"),
])
#: Per-track truth a generated ntuple carries (TDD names; absent from PHYSLITE and mappings):
#: the track-origin class and the truth-vertex index within the jet
#: (:mod:`flavourflow.generate.truth`); padded steps -1.
TRUTH_TRACK_DTYPE = np.dtype([("ftagTruthOriginLabel", "i1"), ("ftagTruthVertexIndex", "i1")])
#: Per-track inputs a reader delivers to :func:`build` (d0 in flavourflow's sign convention).
TRACK_INPUTS = ("pt", "eta", "phi", "charge", "d0", "z0SinTheta", "d0Uncertainty",
                "z0SinThetaUncertainty")
#: uproot's decompressed-page cache per open file: bounded, so that memory does not grow with
#: the file (uproot's default is 100 MB), and large enough to keep a cluster that two read
#: blocks share (without one, such pages are decompressed twice: 1.6x slower on PHYSLITE).
READ_CACHE = "32 MB"
#: Jet fields computed here, never read.
COMPUTED_JET_FIELDS = ("n_tracks", "ip2d_llr", "sv_sig", "sv_Lxy", "sv_mass", "sv_efrac",
                       "sv_ntrk", "sv_n2trk")


@dataclass(frozen=True)
class Selection:
    """Jet selection applied while dumping (MeV)."""

    pt_min: float
    abs_eta_max: float

    def keep(self, pt: np.ndarray, eta: np.ndarray) -> np.ndarray:
        return (pt > self.pt_min) & (np.abs(eta) < self.abs_eta_max)

    def as_dict(self) -> dict[str, float]:
        return {"pt_min": self.pt_min, "abs_eta_max": self.abs_eta_max}


def missing_value(dtype: np.dtype) -> float | int | bool:
    """The TDD's "missing" marker of a field: NaN for floats, -1 for integers, False for bools."""
    if dtype.kind == "f":
        return np.nan
    if dtype.kind == "b":
        return False
    return -1


def filled(shape: int | tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A structured array with every field set to its missing marker (every row the same
    bytes)."""
    template = np.empty((), dtype=dtype)
    for name in dtype.names:
        template[name] = missing_value(dtype[name])
    row = np.frombuffer(template.tobytes(), dtype=np.uint8)
    # the row's bytes repeated (one call, at memcpy speed: copying records is 20x slower)
    return np.tile(row, int(np.prod(shape))).view(dtype).reshape(shape)


def jet_dtype(extra: Mapping[str, np.dtype] | None = None) -> np.dtype:
    """JET_DTYPE followed by the reader's extra fields (e.g. tagger outputs)."""
    extra = {k: v for k, v in (extra or {}).items() if k not in JET_DTYPE.names}
    return np.dtype(JET_DTYPE.descr + [(k, np.dtype(v).str) for k, v in extra.items()])


@kernel
def _wrap(dphi: float) -> float:
    """dphi in [-pi, pi): numpy's ``(dphi + pi) % (2 pi) - pi``, remainder and all."""
    r = np.fmod(dphi + math.pi, 2.0 * math.pi)
    if r < 0.0:
        r += 2.0 * math.pi
    elif r == 0.0:
        r = 0.0  # numpy's remainder: +0 for a positive divisor
    return r - math.pi


@kernel
def _magnitude_key(s: float) -> float:
    """The sort key of a track: -|S| as stored (float32), +inf for NaN (last)."""
    m = abs(np.float32(s))
    return np.inf if math.isnan(m) else -np.float64(m)


@kernel
def _build(counts, starts, jet_pt, jet_eta, jet_phi, pt, eta, phi, charge, d0, z0, d0u,
           z0u, out, padding, llr, sv, sv_n, picked):
    """The loop of :func:`build`, jet by jet (tracks of jet j at ``starts[j]`` on);
    ``picked[j, r]``: the input index of the track in step r (-1: padding)."""
    most = 0
    for j in range(len(counts)):
        most = max(most, counts[j])
    work = np.empty((4, most))  # deta, dphi, S(d0), S(z0) of the jet's tracks
    keys = np.empty(most)
    order = np.empty(most, np.int64)
    scratch = vertexing.new_scratch()
    max_tracks = out.shape[1]
    for j in range(len(counts)):
        n, first = counts[j], starts[j]
        jet_eta_j, jet_phi_j = np.float64(jet_eta[j]), np.float64(jet_phi[j])
        total = 0.0
        for k in range(n):
            t = first + k
            dphi = _wrap(np.float64(phi[t]) - jet_phi_j)
            deta = np.float64(eta[t]) - jet_eta_j
            d0_t, z0_t = np.float64(d0[t]), np.float64(z0[t])
            # Lifetime sign: + when the point of closest approach lies in the jet's
            # hemisphere; z0 of a track from a vertex displaced along the jet has the sign
            # of sinh(eta_jet) - sinh(eta_trk), i.e. of -deta.
            d0_sign = -1.0 if d0_t * math.sin(dphi) < 0 else 1.0
            z0_sign = 1.0 if z0_t * deta <= 0 else -1.0
            work[0, k], work[1, k] = deta, dphi
            work[2, k] = d0_sign * abs(d0_t) / np.float64(d0u[t])
            work[3, k] = z0_sign * abs(z0_t) / np.float64(z0u[t])
            total += taggers.track_llr(work[2, k])
            # by descending |S(d0)|, NaN last, ties in their order: a stable insertion
            key, at = _magnitude_key(work[2, k]), k
            while at > 0 and keys[at - 1] > key:
                keys[at], order[at] = keys[at - 1], order[at - 1]
                at -= 1
            keys[at], order[at] = key, k
        llr[j] = total
        kept = min(n, max_tracks)
        for r in range(kept):
            k = order[r]
            t = first + k
            row = out[j, r]
            row["pt"], row["eta"], row["phi"] = pt[t], eta[t], phi[t]
            row["deta"], row["dphi"] = work[0, k], work[1, k]
            row["dr"] = math.hypot(work[0, k], work[1, k])
            row["ptfrac"] = np.float64(pt[t]) / np.float64(jet_pt[j])
            q = np.float64(charge[t])
            row["charge"] = np.int8(-1.0 if math.isnan(q) else q)
            row["d0"], row["z0SinTheta"] = d0[t], z0[t]
            row["d0Uncertainty"], row["z0SinThetaUncertainty"] = d0u[t], z0u[t]
            row["IP3D_signed_d0_significance"] = work[2, k]
            row["IP3D_signed_z0_significance"] = work[3, k]
            row["valid"] = True
            picked[j, r] = t
        for r in range(kept, max_tracks):
            out[j, r] = padding
            picked[j, r] = -1
        v = vertexing.find_vertex(out[j], kept, jet_phi_j, scratch)
        sv[0, j], sv[1, j], sv[2, j], sv[3, j] = v[0], v[1], v[2], v[3]
        sv_n[0, j], sv_n[1, j] = v[4], v[5]


def float_column(values: np.ndarray, name: str) -> np.ndarray:
    """A 1-D input column as float32 (kept as it is) or float64 (anything else): the
    kernels are compiled for these two."""
    values = np.asarray(values)
    if values.ndim != 1:
        raise ValueError(f"{name}: expected one value per element, got shape {values.shape}")
    return np.ascontiguousarray(values, np.float32 if values.dtype == np.float32
                                else np.float64)


def build(jets: Mapping[str, np.ndarray], counts: np.ndarray,
          tracks: Mapping[str, np.ndarray], max_tracks: int,
          dtype: np.dtype = JET_DTYPE, starts: np.ndarray | None = None,
          truth: Mapping[str, np.ndarray] | None = None,
          ) -> tuple[np.ndarray, np.ndarray]:
    """Selected jets -> (jets, tracks) structured arrays in the TDD layout.

    ``jets`` holds one value per jet for (some of) the fields of ``dtype`` (absent ones are
    missing: NaN / -1); ``counts[i]`` is the number of tracks of jet i and ``tracks`` holds the
    :data:`TRACK_INPUTS` of all tracks, jet after jet (or, with ``starts``, of jet i from
    position ``starts[i]`` on: a reader then passes its unselected columns). Tracks are
    ordered by descending |signed d0 significance| (as stored, float32) as the TDD does
    (non-finite last, ties in their order) and padded to ``max_tracks`` (floats NaN, ints -1,
    ``valid`` False); the baselines (:mod:`~flavourflow.dump.taggers`,
    :mod:`~flavourflow.dump.vertexing`) use all tracks, the vertex finder the kept ones.
    ``truth`` (optional) holds the :data:`TRUTH_TRACK_DTYPE` fields of all tracks, laid out
    as ``tracks``: they follow their tracks into the padded block (-1 in padded steps).
    A ValueError names what does not fit together.
    """
    counts = np.ascontiguousarray(counts, dtype=np.int64)
    n = len(counts)
    if counts.ndim != 1 or (n and counts.min() < 0) or max_tracks < 0:
        raise ValueError("track counts must be one per jet and >= 0, max_tracks >= 0")
    starts = (np.cumsum(counts) - counts if starts is None
              else np.ascontiguousarray(starts, dtype=np.int64))
    out = filled(n, dtype)
    direction = [float_column(np.asarray(jets.get(k, out[k]), dtype[k]), f"jet {k}")
                 for k in ("pt", "eta", "phi")]  # as stored (float32), as the jets' fields
    columns = [float_column(tracks[name], f"track {name}") for name in TRACK_INPUTS]
    if starts.shape != (n,) or any(len(c) != n for c in direction):
        raise ValueError(f"{n} jets, but {len(starts)} track starts and "
                         f"{[len(c) for c in direction]} jet directions")
    shortest = min(len(c) for c in columns)
    if n and (starts.min() < 0 or int((starts + counts).max()) > shortest):
        raise ValueError(f"track ranges beyond the {shortest} values of the track inputs")
    track_dtype = (np.dtype(TRACK_DTYPE.descr + TRUTH_TRACK_DTYPE.descr) if truth
                   else TRACK_DTYPE)
    padded = np.empty((n, max_tracks), track_dtype)
    llr = np.empty(n, np.float32)
    sv = np.empty((4, n), np.float32)
    sv_n = np.empty((2, n), np.int32)
    picked = np.empty((n, max_tracks), np.int64)
    _build(counts, starts, *direction, *columns, padded, filled(1, track_dtype)[0], llr, sv,
           sv_n, picked)
    for name in TRUTH_TRACK_DTYPE.names if truth else ():
        values = np.asarray(truth[name])
        if len(values) < shortest:
            raise ValueError(f"track {name}: {len(values)} values for {shortest} tracks")
        padded[name] = np.where(picked >= 0, values[np.maximum(picked, 0)], -1)
    baselines = {"ip2d_llr": llr, **dict(zip(vertexing.OUTPUTS, [*sv, *sv_n], strict=True))}
    kernels.interleave(out, {**jets, "n_tracks": counts, **baselines})
    return out, padded


# --- branch type checks shared by the readers ------------------------------------------------

_KINDS = {"float": "fiu", "int": "iu", "any": "fiub"}


def _layers(form: ak.forms.Form) -> tuple[int, ak.forms.Form]:
    """(number of list layers, innermost content) of an awkward form."""
    depth = 0
    while True:
        if isinstance(form, (ak.forms.ListOffsetForm, ak.forms.ListForm,
                             ak.forms.RegularForm)):
            depth += 1
            form = form.content
        elif isinstance(form, (ak.forms.IndexedOptionForm, ak.forms.ByteMaskedForm,
                               ak.forms.BitMaskedForm, ak.forms.UnmaskedForm,
                               ak.forms.IndexedForm)):
            form = form.content
        else:
            return depth, form


def check_type(array: ak.Array, path: Path | str, branch: str, depth: int,
               kind: str = "any", record: tuple[str, ...] = ()) -> None:
    """Raise a one-line error naming ``branch`` unless ``array`` has ``depth`` list layers
    around numbers of ``kind`` (``float``: any number, ``int``: integers, ``any``: numbers or
    booleans) or around records with the fields ``record`` (numbers too)."""
    found_depth, inner = _layers(array.layout.form)
    expected = f"{'var * ' * depth}{'{' + ', '.join(record) + '}' if record else kind}"
    ok = found_depth == depth
    if ok and record:
        ok = isinstance(inner, ak.forms.RecordForm) and all(
            f in inner.fields and isinstance(inner.content(f), ak.forms.NumpyForm)
            for f in record)
    elif ok:
        ok = (isinstance(inner, ak.forms.NumpyForm)
              and np.dtype(inner.primitive).kind in _KINDS[kind])
    if not ok:
        raise FlavourflowError(f"branch has type {ak.type(array).content}, expected "
                               f"{expected}", path=path, field=branch)


def iterate_checked(obj: Any, branches: list[str], step_size: int, path: Path | str,
                    field: str, check: Callable[[ak.Array], None],
                    on_first_failure: Callable[[], None] | None = None) -> Iterator[ak.Array]:
    """``obj.iterate(branches)`` in blocks of ``step_size`` entries, ``check`` run on the first
    block; a failed read (corrupt baskets or pages fail only when read) becomes a one-line
    error naming ``field``, after ``on_first_failure`` (if the first block failed) had the
    chance to name the culprit branch."""
    iterator = obj.iterate(branches, step_size=step_size, library="ak")
    first = True
    while True:
        try:
            block = next(iterator)
        except StopIteration:
            return
        except Exception as err:
            if first and on_first_failure is not None:
                on_first_failure()
            raise FlavourflowError(f"cannot read events: {type(err).__name__}: {err}",
                                   path=path, field=field) from None
        if first:
            check(block)
            first = False
        yield block


class Columns:
    """A block's branches by name, as awkward layouts: what :func:`flat` and :func:`counts`
    take, and a twentieth of the cost of ``ak.Array.__getitem__`` (which wraps each branch
    in a new high-level array; a reader takes some thirty per block)."""

    def __init__(self, events: ak.Array) -> None:
        layout = ak.to_layout(events)
        self._get = (layout.content if isinstance(layout, ak.contents.RecordArray)
                     else events.__getitem__)

    def __getitem__(self, name: str) -> ak.contents.Content | ak.Array:
        return self._get(name)


def _layout(array: ak.Array | ak.contents.Content) -> ak.contents.Content:
    return array if isinstance(array, ak.contents.Content) else ak.to_layout(array)


def flat(array: ak.Array | ak.contents.Content) -> np.ndarray:
    """All values of a (jagged) numeric array, in order, as numpy: a view of the layout's
    buffer where the layout is plain lists of numbers (what uproot reads), else
    ``ak.flatten(axis=None)``."""
    layout = _layout(array)
    start, stop = 0, len(layout)
    while isinstance(layout, ak.contents.ListOffsetArray):
        offsets = layout.offsets.data
        start, stop = int(offsets[start]), int(offsets[stop])
        layout = layout.content
    if isinstance(layout, ak.contents.NumpyArray) and layout.data.ndim == 1:
        return layout.data[start:stop]
    return ak.to_numpy(ak.flatten(array, axis=None))


def counts(array: ak.Array | ak.contents.Content, depth: int = 1) -> np.ndarray:
    """The lengths of the lists at list depth ``depth`` (1: per event, 2: per jet, ...),
    flattened: ``ak.flatten(ak.num(array, axis=depth), axis=None)``."""
    layout = _layout(array)
    start, stop = 0, len(layout)
    for _ in range(depth - 1):
        if not isinstance(layout, ak.contents.ListOffsetArray):
            break
        offsets = layout.offsets.data
        start, stop = int(offsets[start]), int(offsets[stop])
        layout = layout.content
    else:
        if isinstance(layout, ak.contents.ListOffsetArray):
            return np.diff(layout.offsets.data[start:stop + 1])
    return ak.to_numpy(ak.flatten(ak.num(array, axis=depth), axis=None))


def flat_index(counts: np.ndarray) -> np.ndarray:
    """Offsets of each list's first element in the flattened content."""
    return np.concatenate([[0], np.cumsum(counts)])[:-1]
