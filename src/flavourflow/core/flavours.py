"""Flavour labels, units and working points: defined once, used by every stage."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Energies and momenta are in MeV throughout, as in ATLAS xAOD and TDD files.
MeV = 1.0
GeV = 1000.0 * MeV

#: Name of the truth-label field (ATLAS HadronConeExclTruthLabelID convention).
LABEL_FIELD = "HadronConeExclTruthLabelID"


@dataclass(frozen=True)
class Flavour:
    """One jet flavour: its truth label, its short name and its output-probability name."""

    name: str
    label: int
    prob: str
    colour: str


LIGHT = Flavour("light", 0, "pu", "tab:green")
CHARM = Flavour("charm", 4, "pc", "tab:orange")
BOTTOM = Flavour("bottom", 5, "pb", "tab:blue")
TAU = Flavour("tau", 15, "ptau", "tab:purple")

#: Classes of the networks, in output order (light, charm, bottom), as DL1 does.
CLASSES: tuple[Flavour, ...] = (LIGHT, CHARM, BOTTOM)
ALL_FLAVOURS: tuple[Flavour, ...] = (LIGHT, CHARM, BOTTOM, TAU)
#: Every truth label a jet may carry; any other value is a corrupt or foreign input.
KNOWN_LABELS: tuple[int, ...] = tuple(f.label for f in ALL_FLAVOURS)

#: b-jet efficiencies of the standard working points.
WORKING_POINTS: tuple[float, ...] = (0.60, 0.70, 0.77, 0.85)

#: flavourflow's own baseline discriminants, computed in the dump from reconstructed tracks.
BASELINES: tuple[str, ...] = ("ip2d_llr", "sv_sig")

#: f_c of the D_b each ATLAS tagger is calibrated with (DL1*: 0.018; GN2v01: 0.2), used when
#: such a tagger's p_b, p_c, p_u are shown as a baseline; others get DEFAULT_FC.
DEFAULT_FC = 0.018
TAGGER_FC: dict[str, float] = {"DL1r": 0.018, "DL1dv01": 0.018, "GN2v01": 0.2}


def class_index(labels: np.ndarray, classes: tuple[Flavour, ...] = CLASSES) -> np.ndarray:
    """Map truth labels to class indices in ``classes`` order; -1 for labels not in it."""
    out = np.full(labels.shape, -1, dtype=np.int8)
    for i, flav in enumerate(classes):
        out[labels == flav.label] = i
    return out
