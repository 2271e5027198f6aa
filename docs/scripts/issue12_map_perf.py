"""Issue 12 (docs/performance.md): seconds per SVI step of the intervention maps side by side
(`gim_ppl.evaluation.perf.map_step_timing`, the maps section of `gim-ppl bench --perf`) at
40 and 320 training perturbations; writes docs/data/perf_maps.json.
Usage: OPENBLAS_NUM_THREADS=1 python docs/scripts/issue12_map_perf.py"""

import json
import platform
from pathlib import Path

import jax

from gim_ppl.evaluation.perf import map_step_timing

rows = map_step_timing((40, 320), n_steps=100, repeats=5)
out = Path(__file__).resolve().parents[1] / "data" / "perf_maps.json"
out.write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                           "jax": jax.__version__, "rows": rows}, indent=1))
