"""Shared definitions: the event-number split, streaming moments, ROC arithmetic."""

from __future__ import annotations

import numpy as np
import pytest

from flavourflow.core import roc, split
from flavourflow.core.errors import FlavourflowError
from flavourflow.preprocess.stats import RunningMoments

FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}


def test_split_depends_only_on_event_number_and_seed() -> None:
    events = np.arange(200_000, dtype=np.int64) * 7 + 3
    which = split.assign(events, FRACTIONS, seed=5)
    shuffled = np.random.default_rng(0).permutation(len(events))
    assert np.array_equal(split.assign(events[shuffled], FRACTIONS, seed=5), which[shuffled])
    shares = np.bincount(which, minlength=3) / len(events)
    assert np.allclose(shares, [0.6, 0.2, 0.2], atol=0.005)
    other_seed = split.assign(events, FRACTIONS, seed=6)
    assert 0.4 < np.mean(other_seed == which) < 0.6  # independent, not identical


def test_split_rejects_fractions_not_adding_to_one() -> None:
    with pytest.raises(FlavourflowError, match="add up to 1"):
        split.assign(np.arange(5), {"train": 0.5, "val": 0.2, "test": 0.2}, seed=1)


def test_running_moments_match_numpy_on_chunks_with_nan() -> None:
    rng = np.random.default_rng(3)
    data = rng.normal([10.0, -3.0], [2.0, 0.5], size=(10_001, 2))
    data[rng.random(data.shape) < 0.1] = np.nan
    moments = RunningMoments(2)
    for start in range(0, len(data), 997):
        moments.update(data[start : start + 997])
    assert np.allclose(moments.mean, np.nanmean(data, axis=0), rtol=1e-12)
    assert np.allclose(moments.std, np.nanstd(data, axis=0), rtol=1e-12)


def test_rejection_and_auc_on_known_distributions() -> None:
    rng = np.random.default_rng(4)
    signal, background = rng.normal(1.0, 1.0, 200_000), rng.normal(0.0, 1.0, 200_000)
    cut = roc.cut_for_efficiency(signal, 0.7)
    assert np.mean(signal > cut) == pytest.approx(0.7, abs=1e-4)
    # signal N(1, 1): the 70 % cut is at 1 - 0.5244; background N(0, 1) passes it with 0.3172
    rej, err = roc.rejection(background, cut)
    assert rej == pytest.approx(1 / 0.3172, rel=0.02) and 0 < err < 0.05 * rej
    assert roc.auc(signal, background) == pytest.approx(0.7602, abs=0.003)  # Phi(1/sqrt 2)
    assert roc.auc(np.ones(10), np.ones(10)) == pytest.approx(0.5)
    assert roc.rejection(background, background.max() + 1) == (None, None)


def test_working_point_out_of_reach_of_a_discrete_discriminant() -> None:
    rng = np.random.default_rng(5)
    # 25 % of signal jets have no vertex (value 0): efficiencies above 75 % are out of reach
    signal = np.where(rng.random(10_000) < 0.25, 0.0, rng.exponential(5.0, 10_000) + 0.1)
    background = np.where(rng.random(10_000) < 0.9, 0.0, rng.exponential(1.0, 10_000) + 0.1)
    assert roc.cut_for_efficiency(signal, 0.7) is not None
    assert roc.cut_for_efficiency(signal, 0.85) is None
    assert roc.rejection(background, None) == (None, None)
    curve = roc.roc_curve(signal, background, [0.6, 0.7, 0.85, 0.9])
    assert np.all(np.isfinite(curve[:2])) and np.all(np.isnan(curve[2:]))


def test_b_discriminant_formula() -> None:
    d = roc.b_discriminant(np.array([0.5]), np.array([0.3]), np.array([0.2]), f_c=0.1)
    assert d[0] == pytest.approx(np.log(0.5 / (0.1 * 0.3 + 0.9 * 0.2)))


def test_error_is_one_line_naming_file_and_field() -> None:
    err = FlavourflowError("bad\nthing   here", path="/x/y.root", field="jet_pt")
    assert str(err) == "/x/y.root: field 'jet_pt': bad thing here"


def test_configcheck_lists_are_the_code_s_own() -> None:
    """The workflow's DAG-time checks read these lists from the source with ast: they must
    be what the modules define (a rename there fails here, not silently in the workflow)."""
    import inspect

    from flavourflow.core import configcheck
    from flavourflow.dump import blocks, physlite
    from flavourflow.train import models

    jets, tracks = configcheck.dump_fields()
    assert jets == set(blocks.JET_DTYPE.names) and tracks == set(blocks.TRACK_DTYPE.names)
    assert configcheck.physlite_tagger_fields() == {
        f"{t}_{o}" for t in physlite.TAGGERS for o in physlite.TAGGER_OUTPUTS}
    assert configcheck.truth_track_fields() == set(blocks.TRUTH_TRACK_DTYPE.names)
    for name, builder in models.ARCHITECTURES.items():
        parameters = set(inspect.signature(builder).parameters)
        options = parameters - {"shapes", "n_classes", "fast", "aux"}
        assert configcheck.architecture_options()[name] == options
        assert (name in configcheck.aux_architectures()) == ("aux" in parameters)
    assert configcheck.aux_architectures() == {"transformer"}
    assert configcheck.onnx_only_architectures() == set(models.ONNX_ONLY) == {"transformer"}
    assert configcheck.missing_inputs(["log_pt", "log1p_sv_sig", "pt2"], jets) == ["pt2"]


def test_cli_defaults_are_the_schema_s() -> None:
    """One definition of each default: the CLIs' equal the config schema's (they read it)."""
    import argparse
    import importlib

    import yaml

    from flavourflow.core import defaults

    schema = yaml.safe_load(defaults.SCHEMA.read_text())
    assert schema["properties"]["export"]["properties"]["min_jets"]["default"] == 10_000
    cases = {"export": {"min_jets": "export.min_jets", "max_jets": "export.max_jets"},
             "fetch": {"retries": "fetch.retries", "backoff": "fetch.backoff_s"},
             "inject": {"step_size": "inject.step_size"},
             "inspect": {"bins": "inspect.bins"},
             "preprocess": {"block_size": "preprocess.block_size"}}
    for stage, keys in cases.items():
        parser = argparse.ArgumentParser()
        importlib.import_module(f"flavourflow.{stage}.cli").add_parser(
            parser.add_subparsers(dest="stage"))
        sub = parser._subparsers._group_actions[0].choices[stage]
        for dest, key in keys.items():
            node = schema
            for part in key.split("."):
                node = node["properties"][part]
            assert sub.get_default(dest) == node["default"], (stage, dest)
