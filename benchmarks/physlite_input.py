"""Large PHYSLITE inputs for the dump benchmarks: the real Run 3 test file
(scikit-hep-testdata ``uproot-physlite-rntuple_v1-0-0-0.root``) tiled ``copies`` times into
an RNTuple ``EventData`` written by uproot, with the branches the PHYSLITE reader uses and
unique event numbers. Real content (kinematics, links, track parameters, tagger outputs),
any size.
"""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import skhep_testdata
import uproot

from flavourflow.dump import physlite

RUN3 = "uproot-physlite-rntuple_v1-0-0-0.root"
#: Events per RNTuple cluster (one ``extend`` call), about what ATLAS files hold.
CLUSTER_EVENTS = 2000


def physlite_branches() -> list[str]:
    """The branches the PHYSLITE reader reads from the Run 3 test file."""
    reader = physlite.open_file(Path(skhep_testdata.data_path(RUN3)))
    return sorted({q.branch for q in reader.quantities.values()})


def write_tiled(path: Path, copies: int) -> tuple[Path, list[str]]:
    """Write ``copies`` copies of the Run 3 test file's events to ``path``."""
    branches = physlite_branches()
    source = uproot.open(skhep_testdata.data_path(RUN3))["EventData"]
    events = source.arrays(branches)
    n = len(events)
    per_cluster = max(1, CLUSTER_EVENTS // n)
    number = events["EventInfoAuxDyn:eventNumber"]
    with uproot.recreate(path) as f:
        ntuple = None
        for start in range(0, copies, per_cluster):
            parts = []
            for k in range(start, min(copies, start + per_cluster)):
                part = ak.with_field(events, number + np.uint64(k * 10_000_000),
                                     "EventInfoAuxDyn:eventNumber")
                parts.append(part)
            block = ak.concatenate(parts)
            data = {name: block[name] for name in branches}
            if ntuple is None:
                ntuple = f.mkrntuple("EventData", data)
            else:
                ntuple.extend(data)
    return path, branches
