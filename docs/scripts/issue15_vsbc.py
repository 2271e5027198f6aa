"""VSBC (NumPyro's `vsbc_diagnostic`) of AutoNormal on the small calibration GIM, over keys
(issue 15, docs/calibration.md): the test in tests/test_calibration.py, key by key.

    OPENBLAS_NUM_THREADS=1 python docs/scripts/issue15_vsbc.py KEY [KEY ...]

Per key: the smallest KS p-value over the K scalars and how many fall below 0.01 / K, for
the fitted guide (100 simulated data sets) and for the negative control (30 data sets, the
guide read off one prior sd away). Appends JSON lines to docs/data/issue15_vsbc.jsonl.
"""

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from test_calibration import (
    LocShiftedAtReadout,
    calibration_problem,
    optimiser,
    p_values,
    prior_sd_unconstrained,
    run_vsbc,
)

out = Path(__file__).resolve().parents[1] / "data" / "issue15_vsbc.jsonl"
model, _, observed = calibration_problem()
for key in (int(k) for k in sys.argv[1:]):
    start = time.perf_counter()
    p = p_values(run_vsbc(observed, optimiser(), n_sims=100, key=key))
    control = p_values(run_vsbc(observed, LocShiftedAtReadout(
        optimiser(), prior_sd_unconstrained(model)), n_sims=30, key=key))
    k = p.size
    row = {"key": key, "n_scalars": k, "threshold": 0.01 / k,
           "min_p": float(p.min()), "n_fail": int((p < 0.01 / k).sum()),
           "control_min_p": float(control.min()),
           "control_fraction_fail": float((control < 0.01 / k).mean()),
           "seconds": round(time.perf_counter() - start, 1),
           "command": f"python docs/scripts/issue15_vsbc.py {key}"}
    print(json.dumps(row), flush=True)
    with out.open("a") as f:
        f.write(json.dumps(row) + "\n")
