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

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from flavourflow.core.errors import FlavourflowError
from flavourflow.core.flavours import LABEL_FIELD
from flavourflow.dump import kernels, taggers, vertexing

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


def descending_magnitude(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """The order that sorts by ``group`` (integers >= 0), then by descending |value| as
    stored (float32), NaN last, ties in their original order: one stable sort of a 64-bit key
    (group in the high half, the inverted float bits of |value| in the low half)."""
    magnitude = np.abs(np.asarray(values, dtype=np.float32))
    bits = magnitude.view(np.uint32).astype(np.int64)  # ordered as the floats are, for >= 0
    bits[np.isnan(magnitude)] = -1
    key = (np.asarray(group, dtype=np.int64) << 32) | (0xFFFFFFFE - bits)
    return np.argsort(key, kind="stable")


def jet_dtype(extra: Mapping[str, np.dtype] | None = None) -> np.dtype:
    """JET_DTYPE followed by the reader's extra fields (e.g. tagger outputs)."""
    extra = {k: v for k, v in (extra or {}).items() if k not in JET_DTYPE.names}
    return np.dtype(JET_DTYPE.descr + [(k, np.dtype(v).str) for k, v in extra.items()])


def _wrap(dphi: np.ndarray) -> np.ndarray:
    return (dphi + np.pi) % (2.0 * np.pi) - np.pi


def build(jets: Mapping[str, np.ndarray], counts: np.ndarray,
          tracks: Mapping[str, np.ndarray], max_tracks: int,
          dtype: np.dtype = JET_DTYPE, starts: np.ndarray | None = None,
          ) -> tuple[np.ndarray, np.ndarray]:
    """Selected jets -> (jets, tracks) structured arrays in the TDD layout.

    ``jets`` holds one value per jet for (some of) the fields of ``dtype`` (absent ones are
    missing: NaN / -1); ``counts[i]`` is the number of tracks of jet i and ``tracks`` holds the
    :data:`TRACK_INPUTS` of all tracks, jet after jet (or, with ``starts``, of jet i from
    position ``starts[i]`` on: a reader then passes its unselected columns). Tracks are
    ordered by descending |signed d0 significance| as the TDD does (non-finite last) and
    padded to ``max_tracks`` (floats NaN, ints -1, ``valid`` False); the baselines use all
    tracks.
    """
    n = len(counts)
    counts = np.asarray(counts, dtype=np.int64)
    out = filled(n, dtype)
    if kernels.available():
        if starts is None:
            starts = np.cumsum(counts) - counts
        padded, baselines = kernels.build_tracks(
            counts, starts,
            *(np.asarray(jets.get(k, out[k]), dtype[k]) for k in ("pt", "eta", "phi")),
            [tracks[name] for name in TRACK_INPUTS], max_tracks, TRACK_DTYPE,
            filled(1, TRACK_DTYPE))
        kernels.interleave(out, {**jets, "n_tracks": counts, **baselines})
        return out, padded
    for name, values in jets.items():
        out[name] = values
    out["n_tracks"] = counts
    if starts is not None:  # the tracks of the jets, jet after jet
        index = np.arange(counts.sum()) + np.repeat(starts - (np.cumsum(counts) - counts),
                                                    counts)
        tracks = {name: np.asarray(tracks[name])[index] for name in TRACK_INPUTS}
    return out, _build_numpy(out, counts, tracks, max_tracks)


def _build_numpy(out: np.ndarray, counts: np.ndarray, tracks: Mapping[str, np.ndarray],
                 max_tracks: int) -> np.ndarray:
    """The numpy reference of :func:`build` (and of the compiled kernel): fills the computed
    jet fields of ``out``, returns the padded tracks."""
    n = len(counts)
    jet_of = np.repeat(np.arange(n), counts)
    trk = {name: np.asarray(tracks[name], dtype=np.float64) for name in TRACK_INPUTS}

    jet_phi = out["phi"].astype(np.float64)
    dphi = _wrap(trk["phi"] - jet_phi[jet_of])
    deta = trk["eta"] - out["eta"].astype(np.float64)[jet_of]
    with np.errstate(invalid="ignore", divide="ignore"):
        # Lifetime sign: + when the point of closest approach lies in the jet's hemisphere.
        d0_sign = np.where(trk["d0"] * np.sin(dphi) < 0, -1.0, 1.0)
        # z0 of a track from a vertex displaced along the jet has the sign of sinh(eta_jet) -
        # sinh(eta_trk), i.e. of -deta.
        z0_sign = np.where(trk["z0SinTheta"] * deta <= 0, 1.0, -1.0)
        s_d0 = d0_sign * np.abs(trk["d0"]) / trk["d0Uncertainty"]
        s_z0 = z0_sign * np.abs(trk["z0SinTheta"]) / trk["z0SinThetaUncertainty"]
        ptfrac = trk["pt"] / out["pt"].astype(np.float64)[jet_of]

    out["ip2d_llr"] = taggers.ip2d_llr_flat(s_d0, jet_of, n)

    # Rank of each track inside its jet by descending |S_d0| (NaN last); jets stay in order.
    order = descending_magnitude(s_d0, jet_of)
    starts = np.cumsum(counts) - counts
    rank = np.arange(len(jet_of)) - starts[jet_of]
    keep = rank < max_tracks
    src, rows, cols = order[keep], jet_of[keep], rank[keep]
    columns = {
        "pt": trk["pt"], "eta": trk["eta"], "phi": trk["phi"], "deta": deta, "dphi": dphi,
        "dr": np.hypot(deta, dphi), "ptfrac": ptfrac, "charge": trk["charge"],
        "d0": trk["d0"], "z0SinTheta": trk["z0SinTheta"],
        "d0Uncertainty": trk["d0Uncertainty"],
        "z0SinThetaUncertainty": trk["z0SinThetaUncertainty"],
        "IP3D_signed_d0_significance": s_d0, "IP3D_signed_z0_significance": s_z0,
    }
    kept = np.empty(len(src), dtype=TRACK_DTYPE)  # the kept tracks, in order, then padded
    for name, values in columns.items():
        if TRACK_DTYPE[name].kind == "i":
            values = np.nan_to_num(values, nan=-1.0)
        kept[name] = values[src]
    kept["valid"] = True
    padded = filled((n, max_tracks), TRACK_DTYPE)
    row_bytes = TRACK_DTYPE.itemsize  # rows moved as bytes: faster than as records
    padded.reshape(-1).view(np.uint8).reshape(-1, row_bytes)[rows * max_tracks + cols] = (
        kept.view(np.uint8).reshape(-1, row_bytes))
    for name, values in vertexing.find(padded, jet_phi).items():
        out[name] = values
    return padded


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
