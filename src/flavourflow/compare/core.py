"""The compare stage: the evaluated models of a sample side by side with the baselines.

Every model is scored on the same test jets (the split depends only on the event number and
``preprocess.split_seed``); this is checked, jet by jet, on (eventNumber, jetIndex) before
anything is compared. The baselines come from the first model's scores (they are copied from
the dump, hence the same for all).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from flavourflow.core import roc
from flavourflow.core.errors import FlavourflowError
from flavourflow.core.flavours import CLASSES, LABEL_FIELD
from flavourflow.core.h5files import open_h5
from flavourflow.core.outputs import atomic_path, write_json
from flavourflow.core.rejections import rejection_curves

log = logging.getLogger(__name__)

#: The columns of an evaluate scores.h5 that identify a jet.
KEY_FIELDS = ("eventNumber", "jetIndex")


def _read(path: Path, columns: Sequence[str]) -> np.ndarray:
    """The named columns of ``path``'s ``jets`` (a few per test jet, not the dataset)."""
    try:
        with open_h5(path) as f:
            jets = f["jets"]
            for name in columns:
                if name not in (jets.dtype.names or ()):
                    raise FlavourflowError("missing field", path=path, field=name)
            return jets.fields(list(columns))[...]
    except OSError as err:
        raise FlavourflowError(f"cannot read scores: {err}", path=path) from None


def run(scores: Mapping[str, Path], baselines: Sequence[str], outdir: Path,
        working_points: Sequence[float], title: str) -> dict:
    """Compare the models' D_b (``scores``: model name -> scores.h5) and ``baselines``;
    write ``metrics.json``, a table ``rejections.md`` and the rejection curves ``roc``."""
    if not scores:
        raise FlavourflowError("no models to compare")
    first_name, first_path = next(iter(scores.items()))
    reference = _read(first_path, [*KEY_FIELDS, LABEL_FIELD, *baselines])
    labels = reference[LABEL_FIELD]
    discriminants: dict[str, np.ndarray] = {}
    for name, path in scores.items():
        columns = _read(path, [*KEY_FIELDS, "D_b"])
        for key in KEY_FIELDS:
            if len(columns) != len(reference) or not np.array_equal(columns[key], reference[key]):
                raise FlavourflowError(f"not the test jets of {first_path} (model "
                                       f"'{first_name}')", path=path, field=key)
        discriminants[name] = columns["D_b"]
    discriminants.update({name: reference[name] for name in baselines})

    taggers = {name: roc.by_flavour(values, labels) for name, values in discriminants.items()}
    result = {
        "n_jets": {f.name: int(np.count_nonzero(labels == f.label)) for f in CLASSES},
        "models": list(scores),
        "baselines": list(baselines),
        "taggers": {name: roc.performance(flav, working_points) for name, flav in taggers.items()},
    }
    outdir.mkdir(parents=True, exist_ok=True)
    rejection_curves(taggers, outdir / "roc", title)
    with atomic_path(outdir / "rejections.md") as tmp:
        tmp.write_text(table(result, working_points))
    write_json(outdir / "metrics.json", result)
    log.info("compared %s on %d jets", ", ".join(taggers), len(labels))
    return result


def table(result: dict, working_points: Sequence[float]) -> str:
    """A Markdown table: light and c rejection of every tagger at every working point."""
    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    keys = [f"{round(wp * 100)}" for wp in working_points]
    head = "| tagger | AUC b/light | " + " | ".join(
        f"light rej. {k} % | c rej. {k} %" for k in keys) + " |"
    lines = [head, "|" + "---|" * (2 + 2 * len(keys))]
    for name, entry in result["taggers"].items():
        points = [entry["working_points"][k] for k in keys]
        auc = entry["auc_b_vs_light"]
        lines.append(f"| {name} | {'-' if auc is None else f'{auc:.4f}'} | " + " | ".join(
            f"{cell(p['light_rejection'])} | {cell(p['c_rejection'])}" for p in points) + " |")
    return "\n".join(lines) + "\n"


def rank(metrics: Mapping[str, Path], grid: Mapping[str, Mapping[str, object]],
         rank_by: float) -> list[dict]:
    """A scan's variants, best first: by the network's light rejection at the ``rank_by``
    b efficiency (then c rejection), each with its grid values and AUC."""
    key = f"{round(rank_by * 100)}"
    rows = []
    for name, path in metrics.items():
        try:
            entry = json.loads(Path(path).read_text())["taggers"]["network"]
        except (OSError, ValueError, KeyError) as err:
            raise FlavourflowError(f"not an evaluate metrics.json ({err})", path=path) from None
        if key not in entry["working_points"]:
            raise FlavourflowError(f"no working point {key} % (add {rank_by} to "
                                   "evaluate.working_points)", path=path, field="working_points")
        point = entry["working_points"][key]
        rows.append({"model": name, **{k: grid.get(name, {}).get(k) for k in _grid_keys(grid)},
                     "light_rejection": point["light_rejection"],
                     "c_rejection": point["c_rejection"],
                     "auc_b_vs_light": entry["auc_b_vs_light"]})

    def order(row: dict) -> tuple[float, float]:
        return tuple(-(v if v is not None and math.isfinite(v) else -math.inf)
                     for v in (row["light_rejection"], row["c_rejection"]))

    return sorted(rows, key=order)


def _grid_keys(grid: Mapping[str, Mapping[str, object]]) -> list[str]:
    return sorted({k for values in grid.values() for k in values})


def ranking_table(rows: Sequence[dict], rank_by: float) -> str:
    """The ranking as a Markdown table."""
    keys = [k for k in rows[0] if k not in ("model", "light_rejection", "c_rejection",
                                            "auc_b_vs_light")] if rows else []
    wp = round(rank_by * 100)
    head = ["rank", "model", *keys, f"light rej. {wp} %", f"c rej. {wp} %", "AUC b/light"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, row in enumerate(rows, 1):
        cells = [str(i), row["model"], *(json.dumps(row[k]) for k in keys),
                 *(f"{row[k]:.1f}" if row[k] is not None else "-"
                   for k in ("light_rejection", "c_rejection")),
                 f"{row['auc_b_vs_light']:.4f}" if row["auc_b_vs_light"] is not None else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
