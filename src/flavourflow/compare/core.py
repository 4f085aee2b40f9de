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
from flavourflow.core.rejections import best_baseline, rejection_curves
from flavourflow.core.style import Figures

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


def _f_c(path: Path) -> float | None:
    """The f_c evaluate used for D_b in ``path`` (its ``f_c`` attribute)."""
    with open_h5(path) as f:
        value = f.attrs.get("f_c")
    return None if value is None else float(value)


def run(scores: Mapping[str, Path], baselines: Sequence[str], outdir: Path,
        working_points: Sequence[float], title: str, reference: str | None = None,
        text: str = "") -> dict:
    """Compare the models' D_b (``scores``: model name -> scores.h5) and ``baselines``;
    write ``metrics.json``, the tables ``rejections.md`` and ``rejections.csv`` and the
    rejection curves ``roc`` (ratio to ``reference``, default the best baseline)."""
    if not scores:
        raise FlavourflowError("no models to compare")
    first_name, first_path = next(iter(scores.items()))
    reference_jets = _read(first_path, [*KEY_FIELDS, LABEL_FIELD, *baselines])
    labels = reference_jets[LABEL_FIELD]
    discriminants: dict[str, np.ndarray] = {}
    f_c = {name: _f_c(path) for name, path in scores.items()}
    for name, path in scores.items():
        columns = _read(path, [*KEY_FIELDS, "D_b"])
        for key in KEY_FIELDS:
            if len(columns) != len(reference_jets) or not np.array_equal(
                    columns[key], reference_jets[key]):
                raise FlavourflowError(f"not the test jets of {first_path} (model "
                                       f"'{first_name}')", path=path, field=key)
        if f_c[name] != f_c[first_name]:
            raise FlavourflowError(f"D_b made with f_c = {f_c[name]}, not the f_c = "
                                   f"{f_c[first_name]} of model '{first_name}'", path=path,
                                   field="f_c")
        discriminants[name] = columns["D_b"]
    discriminants.update({name: reference_jets[name] for name in baselines})

    taggers = {name: roc.by_flavour(values[~np.isnan(values)], labels[~np.isnan(values)])
               for name, values in discriminants.items()}
    performances = {name: {**roc.performance(flav, working_points),
                           "n_nan": int(np.count_nonzero(np.isnan(discriminants[name])))}
                    for name, flav in taggers.items()}
    reference = reference or best_baseline(performances, list(baselines))
    if reference is not None and reference not in taggers:
        raise FlavourflowError(f"reference tagger '{reference}' is none of {list(taggers)}",
                               field="reference")
    result = {
        "n_jets": {f.name: int(np.count_nonzero(labels == f.label)) for f in CLASSES},
        "f_c": f_c[first_name],
        "reference": reference,
        "models": list(scores),
        "baselines": list(baselines),
        "taggers": performances,
    }
    outdir.mkdir(parents=True, exist_ok=True)
    figures = Figures(f"models {', '.join(scores)}, sample {outdir.name}")
    figures.draw("roc", outdir / "roc", rejection_curves, taggers, title=title,
                 reference=reference, text=text)
    result["problems"] = figures.problems
    with atomic_path(outdir / "rejections.md") as tmp:
        tmp.write_text(table(result, working_points))
    with atomic_path(outdir / "rejections.csv") as tmp:
        tmp.write_text(csv_table(result, working_points))
    write_json(outdir / "metrics.json", result)
    log.info("compared %s on %d jets", ", ".join(taggers), len(labels))
    return result


def rejection_cell(point: dict, background: str) -> str:
    """``412 ± 35``, or ``> 830`` where fewer than 10 jets pass (95 % CL lower limit), or
    ``-`` where the working point is out of reach."""
    value = point[f"{background}_rejection"]
    if value is not None:
        return f"{value:.3g} ± {point[f'{background}_rejection_err']:.2g}"
    limit = point[f"{background}_rejection_lower_limit"]
    return "-" if limit is None else f"> {limit:.3g}"


def table(result: dict, working_points: Sequence[float]) -> str:
    """A Markdown table: the cut and the light and c rejection (± stat. uncertainty, or a
    lower limit) of every tagger at every working point, with the f_c used."""
    keys = [f"{round(wp * 100)}" for wp in working_points]
    head = "| tagger | AUC b/light | " + " | ".join(
        f"cut {k} % | light rej. {k} % | c rej. {k} %" for k in keys) + " |"
    lines = [head, "|" + "---|" * (2 + 3 * len(keys))]
    for name, entry in result["taggers"].items():
        points = [entry["working_points"][k] for k in keys]
        auc = entry["auc_b_vs_light"]
        lines.append(f"| {name} | {'-' if auc is None else f'{auc:.4f}'} | " + " | ".join(
            f"{'-' if p['cut'] is None else format(p['cut'], '.4g')} | "
            f"{rejection_cell(p, 'light')} | {rejection_cell(p, 'c')}" for p in points) + " |")
    n = result["n_jets"]
    ratios = f"ratios in roc.pdf to {result['reference']}" if result.get("reference") else \
        "no ratio panel (no reference tagger)"
    notes = [f"Models' D_b with f_c = {result.get('f_c')}; {ratios}. Test jets: "
             f"{n['bottom']} b, {n['charm']} c, {n['light']} light.",
             "± is the binomial statistical uncertainty of the background efficiency; "
             f"> X: fewer than {roc.MIN_PASSING} background jets pass, X is the "
             f"{round(roc.LIMIT_CL * 100)} % CL lower limit (Clopper-Pearson); "
             "-: the working point is out of reach."]
    return "\n".join(lines) + "\n\n" + "\n\n".join(notes) + "\n"


CSV_COLUMNS = ("tagger", "working_point", "cut", "b_efficiency_achieved", "background",
               "rejection", "rejection_err", "rejection_lower_limit", "n_pass", "n_jets",
               "f_c")


def csv_table(result: dict, working_points: Sequence[float]) -> str:
    """Every rejection as one CSV row (empty cells for None), columns :data:`CSV_COLUMNS`."""
    import csv
    import io

    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for name, entry in result["taggers"].items():
        for wp in working_points:
            point = entry["working_points"][f"{round(wp * 100)}"]
            for background, flavour in (("light", "light"), ("c", "charm")):
                row = [name, wp, point["cut"], point["b_efficiency_achieved"], flavour,
                       point[f"{background}_rejection"], point[f"{background}_rejection_err"],
                       point[f"{background}_rejection_lower_limit"],
                       point[f"{background}_n_pass"], point[f"n_{flavour}"], result.get("f_c")]
                writer.writerow(["" if v is None else v for v in row])
    return stream.getvalue()


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
                     **{k: point.get(k) for k in _RANKED},
                     "auc_b_vs_light": entry["auc_b_vs_light"]})

    def order(row: dict) -> tuple[float, float]:
        return tuple(-(v if v is not None and math.isfinite(v) else -math.inf)
                     for v in (_value_or_limit(row, "light"), _value_or_limit(row, "c")))

    return sorted(rows, key=order)


#: What a ranking row keeps of a working point: a rejection, or where fewer than 10
#: background jets pass, its lower limit (ranked by it).
_RANKED = ("light_rejection", "light_rejection_lower_limit", "c_rejection",
           "c_rejection_lower_limit")


def _value_or_limit(row: dict, background: str) -> float | None:
    value = row.get(f"{background}_rejection")
    return value if value is not None else row.get(f"{background}_rejection_lower_limit")


def _cell(row: dict, background: str) -> str:
    if row.get(f"{background}_rejection") is not None:
        return f"{row[f'{background}_rejection']:.1f}"
    limit = row.get(f"{background}_rejection_lower_limit")
    return f"> {limit:.1f}" if limit is not None else "-"


def _grid_keys(grid: Mapping[str, Mapping[str, object]]) -> list[str]:
    return sorted({k for values in grid.values() for k in values})


def ranking_table(rows: Sequence[dict], rank_by: float) -> str:
    """The ranking as a Markdown table."""
    keys = [k for k in rows[0] if k not in ("model", *_RANKED, "auc_b_vs_light")] if rows \
        else []
    wp = round(rank_by * 100)
    head = ["rank", "model", *keys, f"light rej. {wp} %", f"c rej. {wp} %", "AUC b/light"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, row in enumerate(rows, 1):
        cells = [str(i), row["model"], *(json.dumps(row[k]) for k in keys),
                 _cell(row, "light"), _cell(row, "c"),
                 f"{row['auc_b_vs_light']:.4f}" if row["auc_b_vs_light"] is not None else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
