"""The compare stage: models and baselines on the same test jets, from evaluate's scores.h5."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from test_dump import run_cli

from flavourflow.compare import core
from flavourflow.core import roc
from flavourflow.core.errors import FlavourflowError
from flavourflow.core.flavours import LABEL_FIELD

N = 3000


def write_scores(path: Path, d_b: np.ndarray, seed: int = 0, n: int = N,
                 f_c: float = 0.018) -> Path:
    """A scores.h5 as evaluate writes it (the columns compare reads)."""
    rng = np.random.default_rng(seed)
    labels = np.array([0, 4, 5])[np.arange(n) % 3]
    jets = np.zeros(n, dtype=[("eventNumber", "i8"), ("jetIndex", "i4"), (LABEL_FIELD, "i4"),
                              ("ip2d_llr", "f4"), ("sv_sig", "f4"), ("D_b", "f4")])
    jets["eventNumber"], jets["jetIndex"] = np.arange(n) // 2, np.arange(n) % 2
    jets[LABEL_FIELD] = labels
    jets["ip2d_llr"] = rng.normal(labels / 5.0, 1.0)
    jets["sv_sig"] = rng.normal(0.0, 1.0, n)  # no separation at all
    jets["D_b"] = d_b[:n]
    with h5py.File(path, "w") as f:
        f.create_dataset("jets", data=jets)
        f.attrs["f_c"] = f_c
    return path


def test_models_and_baselines_side_by_side(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    labels = np.array([0, 4, 5])[np.arange(N) % 3]
    good = write_scores(tmp_path / "good.h5", rng.normal(2.0 * labels / 5.0, 1.0))
    weak = write_scores(tmp_path / "weak.h5", rng.normal(0.5 * labels / 5.0, 1.0))
    out = tmp_path / "compare"
    result = core.run({"good": good, "weak": weak}, ["ip2d_llr", "sv_sig"], out, [0.7], "t")
    assert list(result["taggers"]) == ["good", "weak", "ip2d_llr", "sv_sig"]
    assert result["n_jets"] == {"light": N // 3, "charm": N // 3, "bottom": N // 3}
    rej = {name: entry["working_points"]["70"]["light_rejection"]
           for name, entry in result["taggers"].items()}
    assert rej["good"] > rej["ip2d_llr"] > rej["weak"] > 1.0
    assert rej["sv_sig"] == pytest.approx(1 / 0.7, rel=0.15)  # random: rejection 1/eff
    with h5py.File(good) as f:
        jets = f["jets"][...]
    b, light = jets["D_b"][jets[LABEL_FIELD] == 5], jets["D_b"][jets[LABEL_FIELD] == 0]
    assert result["taggers"]["good"]["auc_b_vs_light"] == roc.auc(b, light)
    assert json.loads((out / "metrics.json").read_text()) == result
    assert result["f_c"] == 0.018 and result["reference"] == "ip2d_llr"  # the best baseline
    table = (out / "rejections.md").read_text().splitlines()
    assert table[0] == "| tagger | AUC b/light | cut 70 % | light rej. 70 % | c rej. 70 % |"
    point = result["taggers"]["good"]["working_points"]["70"]
    assert table[2] == (f"| good | {result['taggers']['good']['auc_b_vs_light']:.4f} | "
                        f"{point['cut']:.4g} | {point['light_rejection']:.3g} ± "
                        f"{point['light_rejection_err']:.2g} | {point['c_rejection']:.3g} ± "
                        f"{point['c_rejection_err']:.2g} |")
    assert len([line for line in table if line.startswith("| ")]) == 1 + 4
    assert any("f_c = 0.018" in line for line in table)
    import csv

    rows = list(csv.DictReader((out / "rejections.csv").open()))
    assert len(rows) == 4 * 2  # tagger x background at the one working point
    good_light = next(r for r in rows if r["tagger"] == "good" and r["background"] == "light")
    assert float(good_light["rejection"]) == point["light_rejection"]
    assert int(good_light["n_pass"]) == point["light_n_pass"] and good_light["f_c"] == "0.018"
    assert (out / "roc.pdf").read_bytes()[:4] == b"%PDF"


def test_fewer_than_10_passing_is_a_lower_limit_and_f_c_must_agree(tmp_path: Path) -> None:
    """A tagger that lets 3 of 1000 light jets pass at 70 %: "> X" in the table, an empty
    rejection and the limit in the CSV, never the naive 1000/3; models whose D_b used
    different f_c are refused, naming the file and the field."""
    labels = np.array([0, 4, 5])[np.arange(N) % 3]
    d_b = np.where(labels == 5, np.arange(N) / N + 1.0, 0.0)  # b jets above every other
    d_b[np.flatnonzero(labels == 0)[:3]] = 5.0  # but 3 light jets above every b jet
    sharp = write_scores(tmp_path / "sharp.h5", d_b)
    result = core.run({"sharp": sharp}, [], tmp_path / "out", [0.7], "t")
    point = result["taggers"]["sharp"]["working_points"]["70"]
    assert point["light_rejection"] is None and point["light_n_pass"] == 3
    assert 1000 / 3 / 3 < point["light_rejection_lower_limit"] < 1000 / 3
    line = (tmp_path / "out/rejections.md").read_text().splitlines()[2]
    assert f"> {point['light_rejection_lower_limit']:.3g}" in line and "333" not in line
    other = write_scores(tmp_path / "other.h5", d_b, f_c=0.05)
    with pytest.raises(FlavourflowError, match="other.h5: field 'f_c'"):
        core.run({"sharp": sharp, "other": other}, [], tmp_path / "out2", [0.7], "t")


def test_models_scored_on_other_jets_are_refused(tmp_path: Path) -> None:
    d_b = np.zeros(N)
    a = write_scores(tmp_path / "a.h5", d_b)
    shorter = write_scores(tmp_path / "b.h5", d_b, n=N - 1)
    with pytest.raises(FlavourflowError, match="not the test jets of"):
        core.run({"a": a, "b": shorter}, [], tmp_path / "out", [0.7], "t")
    result = run_cli("compare", "--scores", f"a={a}", "b", "--outdir", str(tmp_path / "o"))
    assert result.returncode == 1 and "--scores wants MODEL=PATH" in result.stderr
    assert not (tmp_path / "o").exists()


def test_scan_ranking_orders_variants_by_light_then_c_rejection(tmp_path: Path) -> None:
    """Constructed metrics: best light rejection first, ties broken by c rejection, a
    lower limit ranked by its limit and shown as one, a variant that reaches no cut (None)
    last; a missing working point is named."""
    from flavourflow.compare.core import rank, ranking_table

    def write(name: str, light: float | None, c: float | None,
              light_limit: float | None = None) -> Path:
        path = tmp_path / f"{name}.json"
        point = {"light_rejection": light, "c_rejection": c,
                 "light_rejection_lower_limit": light_limit}
        path.write_text(json.dumps({"taggers": {"network": {
            "working_points": {"70": point}, "auc_b_vs_light": 0.9}}}))
        return path

    metrics = {"v0": write("v0", 50.0, 3.0), "v1": write("v1", 80.0, 2.0),
               "v2": write("v2", 50.0, 4.0), "v3": write("v3", None, None),
               "v4": write("v4", None, 5.0, light_limit=60.0)}
    grid = {f"v{i}": {"training.learning_rate": lr} for i, lr in enumerate([1, 2, 3, 4, 5])}
    rows = rank(metrics, grid, 0.70)
    assert [r["model"] for r in rows] == ["v1", "v4", "v2", "v0", "v3"]
    assert rows[0]["training.learning_rate"] == 2
    table = ranking_table(rows, 0.70).splitlines()
    assert table[0].startswith("| rank | model | training.learning_rate | light rej. 70 %")
    assert table[2].startswith("| 1 | v1 | 2 | 80.0 | 2.0 |") and len(table) == 7
    assert table[3].startswith("| 2 | v4 | 5 | > 60.0 | 5.0 |")
    with pytest.raises(FlavourflowError, match="no working point 77"):
        rank(metrics, grid, 0.77)
