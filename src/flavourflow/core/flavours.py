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

#: b-jet efficiencies of the standard working points.
WORKING_POINTS: tuple[float, ...] = (0.60, 0.70, 0.77, 0.85)


def class_index(labels: np.ndarray, classes: tuple[Flavour, ...] = CLASSES) -> np.ndarray:
    """Map truth labels to class indices in ``classes`` order; -1 for labels not in it."""
    out = np.full(labels.shape, -1, dtype=np.int8)
    for i, flav in enumerate(classes):
        out[labels == flav.label] = i
    return out


def by_name(name: str) -> Flavour:
    """The flavour called ``name`` (``light``, ``charm``, ``bottom``, ``tau``)."""
    for flav in ALL_FLAVOURS:
        if flav.name == name:
            return flav
    raise KeyError(f"unknown flavour {name!r}; known: {[f.name for f in ALL_FLAVOURS]}")
