"""The preprocess stage: split, resample, normalise and shuffle the merged dump into memmaps.

Passes over the merged dump (memory bounded by ``block_size`` and by the byte caps below,
whatever the number of jets; outputs are written by row slices, not memory-mapped):

1. jets only (a few fields): split by event number, per-flavour (pT, |eta|) histograms of the
   training split, from which the resampling is decided;
2. jets only: how many rows each split gets after resampling (the memmaps' shapes), and the
   histograms after resampling for the plots;
3. the one streaming pass over jets and tracks: the raw inputs (log transform applied) are
   dealt into the memmaps at random bucket slots (:mod:`.shuffle`), while the moments of
   every input are accumulated on the training split (tracks: valid steps only).

Then each memmap bucket is read once more, in place: NaN -> the variable's default (its
mean), ``x_norm = (x + offset) * scale`` (lwtnn convention, offset = -mean, scale = 1/std),
padded track steps set to 0, and the rows permuted, which completes a uniform shuffle.
A zero or non-finite variance is refused, naming the variable; outputs appear only on
success.
"""

from __future__ import annotations

import contextlib
import logging
import resource
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from flavourflow.core import inputs, progress
from flavourflow.core import split as splitting
from flavourflow.core.errors import FlavourflowError
from flavourflow.core.flavours import CLASSES, KNOWN_LABELS, LABEL_FIELD, class_index
from flavourflow.core.h5files import open_h5
from flavourflow.core.outputs import atomic_path, write_json
from flavourflow.preprocess import chunks, kernels
from flavourflow.preprocess.resampling import Kinematics, Resampling, Sampler, plot
from flavourflow.preprocess.shuffle import BucketShuffler, RowFile, permute_buckets
from flavourflow.preprocess.stats import RunningMoments

log = logging.getLogger(__name__)

#: Names of the scalar jet node and the track sequence node (and of their memmaps).
JET_NODE = inputs.JET_NODE
TRACK_NODE = inputs.TRACK_NODE
#: Jet fields every pass reads besides the inputs.
KEY_FIELDS = ("eventNumber", "jetIndex", LABEL_FIELD, "pt", "eta")
#: Bytes of track fields read at a time (a jet's tracks weigh ~50x its jet fields).
TRACK_READ_BYTES = 32 << 20
#: Bytes of output rows in one shuffle bucket (held in memory when the bucket is permuted).
BUCKET_BYTES = 64 << 20
#: Basename (without .pdf/.png) of the before/after kinematics plot.
PLOT_STEM = "kinematics"


@dataclass(frozen=True)
class Settings:
    """What the preprocess stage needs from the config (``variables``: jet inputs)."""

    variables: Sequence[str]
    fractions: Mapping[str, float]
    split_seed: int
    shuffle_seed: int
    block_size: int
    model_name: str
    track_variables: Sequence[str] = ()
    max_tracks: int | None = None
    log_variables: Sequence[str] = ()
    log1p_variables: Sequence[str] = ()
    resampling: Resampling = field(default_factory=Resampling)
    plots: bool = True
    #: write the per-track truth of the auxiliary tasks (origin, vertex index) as well
    truth: bool = False


#: Stems of the memmaps written per split (``<split>_<stem>.npy``): always all of them, the
#: input groups a model does not have with zero width ([N, 0] jets, [N, 0, 0] tracks), so that
#: every model has the same files.
STEMS = (JET_NODE, TRACK_NODE, f"{TRACK_NODE}_valid", "labels", "weights")
#: Per-track truth targets of the auxiliary tasks (int8 [N, T], -1 in padded steps; [N, 0]
#: for a model without them): stem -> the dump's track field.
TRUTH_STEMS = {f"{TRACK_NODE}_origin": "ftagTruthOriginLabel",
               f"{TRACK_NODE}_vertex": "ftagTruthVertexIndex"}


def read_blocks(path: Path, fields: Sequence[str], block_size: int,
                track_fields: Sequence[str] = (), max_tracks: int = 0
                ) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Consecutive ``(jets, tracks)`` blocks with ``fields`` (tracks: ``track_fields`` of the
    first ``max_tracks`` steps, or None when none are asked for), read chunk by chunk
    (:mod:`.chunks`), the next block in a second thread while this one is used."""
    return _ahead(_blocks(path, fields, block_size, track_fields, max_tracks))


def _ahead(items: Iterator) -> Iterator:
    """``items``, the next one produced in a second thread (the chunk decoder runs without
    the GIL) while the caller uses this one: two items in memory at most."""
    with ThreadPoolExecutor(1, thread_name_prefix="read-ahead") as pool:
        pending = pool.submit(next, items, None)
        try:
            while (item := pending.result()) is not None:
                pending = pool.submit(next, items, None)
                yield item
        finally:
            pending.cancel()
            with contextlib.suppress(BaseException):
                pending.result()  # the thread is done with the generator: close it here
            items.close()


def _blocks(path: Path, fields: Sequence[str], block_size: int,
            track_fields: Sequence[str], max_tracks: int
            ) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    with open_h5(path) as f:
        jets = _dataset(f, path, "jets", fields)
        tracks = _dataset(f, path, TRACK_NODE, track_fields) if track_fields else None
        if tracks is not None and len(tracks) != len(jets):
            raise FlavourflowError(f"{len(tracks)} track rows for {len(jets)} jets", path=path,
                                   field=TRACK_NODE)
        with contextlib.ExitStack() as stack:
            jet_rows = stack.enter_context(chunks.RowReader(jets, path))
            trk_rows = None if tracks is None else stack.enter_context(
                chunks.RowReader(tracks, path))
            for start in range(0, len(jets), block_size):
                stop = min(start + block_size, len(jets))
                block = jet_rows.read(start, stop, fields)
                trk = None
                if trk_rows is not None:
                    trk = trk_rows.read(start, stop, track_fields, max_tracks)
                yield block, trk


def _dataset(f: h5py.File, path: Path, name: str, fields: Sequence[str]) -> h5py.Dataset:
    if name not in f:
        raise FlavourflowError("missing dataset", path=path, field=name)
    ds = f[name]
    for n in fields:
        if n not in (ds.dtype.names or ()):
            raise FlavourflowError(f"missing {name} variable", path=path, field=n)
    return ds


def _variances_ok(moments: RunningMoments, names: Sequence[str], source: Path) -> None:
    std = moments.std
    for i, name in enumerate(names):
        if not np.isfinite(std[i]) or std[i] == 0.0:
            raise FlavourflowError(
                f"variance on the training split is {std[i] ** 2} (needs to be finite and > 0)",
                path=source, field=name,
            )


def _node(name: str, variables: Sequence[inputs.Variable], moments: RunningMoments,
          **extra) -> dict:
    """A variables.json input node: offset = -mean, scale = 1/std, default = mean."""
    entries = []
    for i, v in enumerate(variables):
        entry = {"name": v.name, "offset": float(-moments.mean[i]),
                 "scale": float(1.0 / moments.std[i]), "default": float(moments.mean[i])}
        if v.transform:
            entry.update(source=v.field, transform=v.transform)
        entries.append(entry)
    return {"name": name, **extra, "variables": entries}


def run(source: Path, outdir: Path, settings: Settings) -> dict:
    """Write ``<split>_<group>.npy`` memmaps, ``variables.json`` and the kinematics plots
    under ``outdir``; return the variables.json content. A failure leaves no ``outdir``
    behind where there was none."""
    existed = Path(outdir).exists()
    try:
        return _run(source, Path(outdir), settings)
    except BaseException:
        if not existed:
            shutil.rmtree(outdir, ignore_errors=True)
        raise


def _check_labels(labels: np.ndarray, source: Path) -> None:
    """Refuse truth labels that are no flavour (a mislabelled or corrupt input); taus (15)
    are known and left out of the classes."""
    unknown = ~np.isin(labels, KNOWN_LABELS)
    if unknown.any():
        raise FlavourflowError(
            f"unknown label {int(labels[unknown][0])} ({int(unknown.sum())} jets in a block); "
            f"known: {', '.join(map(str, KNOWN_LABELS))}", path=source, field=LABEL_FIELD)


def _check_finite(block: np.ndarray, names: Sequence[str], source: Path) -> None:
    """Refuse infinite input values (NaN is allowed: it means "missing" and gets the
    variable's default, as in ATLAS' lwtnn)."""
    for name in names:
        n_inf = kernels.count_inf(block[name])
        if n_inf:
            raise FlavourflowError(f"{n_inf} infinite values in a block of {len(block)} jets",
                                   path=source, field=name)


def _run(source: Path, outdir: Path, settings: Settings) -> dict:
    t0 = time.perf_counter()
    transforms = {"log_variables": "log", "log1p_variables": "log1p"}
    chosen: dict[str, str] = {}
    for key, transform in transforms.items():
        names = set(getattr(settings, key))
        unknown = names - {*settings.variables, *settings.track_variables}
        if unknown:
            raise FlavourflowError(f"{sorted(unknown)} are not inputs of the model", field=key)
        if names & set(chosen):
            raise FlavourflowError(f"{sorted(names & set(chosen))} have two transforms",
                                   field=key)
        chosen.update(dict.fromkeys(names, transform))
    jet_vars = [inputs.variable(n, chosen.get(n)) for n in settings.variables]
    trk_vars = [inputs.variable(n, chosen.get(n)) for n in settings.track_variables]
    if not jet_vars and not trk_vars:
        raise FlavourflowError("the model has no inputs", field="jet_variables")
    if settings.truth and not trk_vars:
        raise FlavourflowError("auxiliary track tasks need track inputs", field="aux_tasks")
    has_tracks = bool(trk_vars)
    max_tracks = 0
    if has_tracks:
        with open_h5(source) as f:
            _dataset(f, source, TRACK_NODE, [v.field for v in trk_vars])
            max_tracks = int(settings.max_tracks or f[TRACK_NODE].shape[1])
    config = settings.resampling
    key_fields = list(KEY_FIELDS)

    def keys(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        _check_labels(block[LABEL_FIELD], source)
        cls = class_index(block[LABEL_FIELD])
        which = splitting.assign(block["eventNumber"], settings.fractions, settings.split_seed)
        return cls, np.where(cls >= 0, which, -1)

    with open_h5(source) as f:
        n_rows = len(f["jets"]) if "jets" in f else None  # (read_blocks names it if missing)

    def passing(number: int, what: str, blocks: Iterator) -> Iterator:
        """``blocks`` of a pass over the dump, with its progress in jets."""
        return progress.track(blocks, n_rows, f"preprocess pass {number}/4 ({what})", "jets",
                              size=lambda item: len(item[0]))

    # pass 1: kinematics of the training split, before resampling
    before = Kinematics(config)
    for block, _ in passing(1, "kinematics",
                            read_blocks(source, key_fields, settings.block_size)):
        cls, which = keys(block)
        train = which == 0
        before.fill(cls[train], block["pt"][train], block["eta"][train])
    try:
        sampler = Sampler.from_histograms(config, before, settings.shuffle_seed)
    except FlavourflowError as err:  # about this file's training split: name the file
        raise FlavourflowError(str(err), path=source) from None

    def plan(block: np.ndarray, cls: np.ndarray, which: np.ndarray):
        """Copies and weights of each jet (resampled in train and val, not in test)."""
        resampled = (which == 0) | (which == 1)
        args = (np.maximum(cls, 0), block["pt"], block["eta"])
        copies = np.where(resampled, sampler.copies(*args, block["eventNumber"],
                                                    block["jetIndex"]), 1)
        weights = np.where(resampled, sampler.weights(*args), np.float32(1.0))
        return np.where(which >= 0, copies, 0), weights.astype(np.float32)

    # pass 2: rows per split after resampling; kinematics after it
    counts = dict.fromkeys(splitting.SPLITS, 0)
    originals = dict.fromkeys(splitting.SPLITS, 0)
    after = Kinematics(config)
    for block, _ in passing(2, "resampling",
                            read_blocks(source, key_fields, settings.block_size)):
        cls, which = keys(block)
        copies, weights = plan(block, cls, which)
        for i, name in enumerate(splitting.SPLITS):
            counts[name] += int(copies[which == i].sum())
            originals[name] += int(np.count_nonzero(which == i))
        train = which == 0
        after.fill(cls[train], block["pt"][train], block["eta"][train],
                   copies[train] * weights[train])
    for name, n in counts.items():
        if n == 0:
            raise FlavourflowError(f"the {name} split is empty", path=source, field="eventNumber")
    t1 = time.perf_counter()

    # pass 3: the raw inputs, dealt into shuffled slots; moments on the training split
    outdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(settings.shuffle_seed)
    row_bytes = 4 * len(jet_vars) + max_tracks * (4 * len(trk_vars) + 1) + 1 + 4  # all stems
    bucket_rows = max(1024, min(settings.block_size, BUCKET_BYTES // row_bytes))
    shufflers = {s: BucketShuffler(counts[s], bucket_rows, rng) for s in splitting.SPLITS}
    jet_moments = RunningMoments(len(jet_vars))
    trk_moments = RunningMoments(len(trk_vars))
    fields = list(dict.fromkeys([*key_fields, *(v.field for v in jet_vars)]))
    truth_fields = list(TRUTH_STEMS.values()) if settings.truth else []
    trk_fields = list(dict.fromkeys([*(v.field for v in trk_vars), inputs.VALID_FIELD,
                                     *truth_fields]))
    stems = [s for s in STEMS if (s != JET_NODE or jet_vars)
             and (not s.startswith(TRACK_NODE) or has_tracks)]  # the ones with content
    stems += list(TRUTH_STEMS) if settings.truth else []
    shapes = {JET_NODE: (len(jet_vars),), TRACK_NODE: (max_tracks, len(trk_vars)),
              f"{TRACK_NODE}_valid": (max_tracks,),
              **dict.fromkeys(TRUTH_STEMS, (max_tracks if settings.truth else 0,))}
    read_rows = settings.block_size
    if has_tracks:
        with open_h5(source) as f:
            per_jet = f[TRACK_NODE].fields(trk_fields).dtype.itemsize * max_tracks
        read_rows = max(1024, min(read_rows, TRACK_READ_BYTES // per_jet))
    with _memmaps(outdir, counts, (*STEMS, *TRUTH_STEMS), shapes) as arrays:
        for block, trk in passing(3, "writing", read_blocks(
                source, fields, read_rows, trk_fields if has_tracks else (), max_tracks)):
            cls, which = keys(block)
            _check_finite(block, [v.field for v in jet_vars], source)
            if has_tracks:
                _check_finite(trk, [v.field for v in trk_vars], source)
            copies, weights = plan(block, cls, which)
            if has_tracks:  # [jets, steps] each: views of the fields, or their transforms
                columns = [trk[v.field] if v.transform is None else v.compute(trk[v.field])
                           for v in trk_vars]
            for i, split in enumerate(splitting.SPLITS):
                rows = np.flatnonzero(which == i)
                rows = np.repeat(rows, copies[rows])
                if not len(rows):
                    continue
                out = {"labels": cls[rows], "weights": weights[rows]}
                if jet_vars:
                    x = inputs.jet_matrix(block[rows], jet_vars)
                    if i == 0:
                        jet_moments.update(x)
                    out[JET_NODE] = x.astype(np.float32)
                if has_tracks:
                    values, valid = kernels.gather_steps(columns, trk[inputs.VALID_FIELD],
                                                         rows, max_tracks)
                    if i == 0:
                        trk_moments.update_steps(values, valid)
                    out[TRACK_NODE] = values
                    out[f"{TRACK_NODE}_valid"] = valid
                    for stem, name in TRUTH_STEMS.items() if settings.truth else ():
                        out[stem] = np.where(valid, trk[rows][name][:, :max_tracks],
                                             -1).astype(np.int8)
                for idx, slots in shufflers[split].deal(len(rows)):
                    for stem in stems:
                        arrays[f"{split}_{stem}"][slots] = out[stem][idx]
        if not all(s.complete() for s in shufflers.values()):
            raise FlavourflowError("the shuffle did not place every row", path=source)
        t2 = time.perf_counter()
        _variances_ok(jet_moments, [v.name for v in jet_vars], source)
        _variances_ok(trk_moments, [v.name for v in trk_vars], source)

        # in place, bucket by bucket: defaults, normalisation, padding -> 0, permutation
        norm = {
            JET_NODE: (jet_moments.mean, 1.0 / jet_moments.std),
            TRACK_NODE: (trk_moments.mean, 1.0 / trk_moments.std),
        }

        def finish(blocks: dict) -> dict:
            valid = blocks.get(f"{TRACK_NODE}_valid")
            for node in (JET_NODE, TRACK_NODE):
                if node in blocks:
                    blocks[node] = kernels.normalise(blocks[node], *norm[node],
                                                     valid if node == TRACK_NODE else None)
            normalising.update(len(blocks["labels"]))
            return blocks

        with progress.bar(sum(counts.values()), "preprocess pass 4/4 (normalising, "
                          "shuffling)", "rows") as normalising:
            for split in splitting.SPLITS:
                permute_buckets({stem: arrays[f"{split}_{stem}"] for stem in stems},
                                shufflers[split], finish)
    t3 = time.perf_counter()

    variables = {
        "inputs": [_node(JET_NODE, jet_vars, jet_moments)] if jet_vars else [],
        "input_sequences": ([_node(TRACK_NODE, trk_vars, trk_moments, max_tracks=max_tracks)]
                            if has_tracks else []),
        "outputs": [{"name": settings.model_name, "labels": [c.prob for c in CLASSES]}],
        "classes": [{"name": c.name, "label": c.label} for c in CLASSES],
        "split": {"fractions": dict(settings.fractions), "seed": settings.split_seed},
        "resampling": {**config.as_dict(), "applied_to": ["train", "val"],
                       "n_jets_before": originals},
        "shuffle": {"seed": settings.shuffle_seed, "bucket_rows": bucket_rows},
        "n_jets": counts,
        "source": str(source),
        "truth": ({"stems": TRUTH_STEMS, "padding": -1} if settings.truth else None),
    }
    if settings.plots:
        plot(before, after, outdir / PLOT_STEM, f"{settings.model_name}: training split")
    write_json(outdir / "variables.json", variables)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    log.info("preprocessed %s jets per split (before resampling %s) from %s in %.2f s "
             "(counting %.2f, writing %.2f, normalising %.2f), peak RSS %.0f MB", counts,
             originals, source, t3 - t0, t1 - t0, t2 - t1, t3 - t2, peak)
    return variables


@contextlib.contextmanager
def _memmaps(outdir: Path, counts: Mapping[str, int], stems: Sequence[str],
             shapes: Mapping[str, tuple[int, ...]]) -> Iterator[dict]:
    """Open every `.npy` output (as a :class:`~.shuffle.RowFile`) under a temporary name; all
    move into place only if the block succeeds."""
    dtypes = {JET_NODE: np.float32, TRACK_NODE: np.float32, f"{TRACK_NODE}_valid": np.bool_,
              "labels": np.int8, "weights": np.float32, **dict.fromkeys(TRUTH_STEMS, np.int8)}
    with contextlib.ExitStack() as stack:
        arrays = {}
        for split, n in counts.items():
            for stem in stems:
                tmp = stack.enter_context(atomic_path(outdir / f"{split}_{stem}.npy"))
                arrays[f"{split}_{stem}"] = RowFile(tmp, (n, *shapes.get(stem, ())),
                                                    dtypes[stem])
                stack.callback(arrays[f"{split}_{stem}"].close)
        yield arrays
