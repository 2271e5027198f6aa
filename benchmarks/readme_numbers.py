"""Reruns the commands that produce the README's numbers and compares them with the README.

Each number the README claims comes from one command, which the README names next to it:

- the demo table, "reaches 0.984 on seed 0" and "fell ... to 0.922":
  `gim-ppl demo --no-progress` (wall times are printed beside the README's, not compared:
  they depend on the machine and its load);
- "0.945 on average over seeds 0–9", "0.755×", "7 of 10 seeds", "0.953×", "worst 1.15×":
  `python benchmarks/prediction_variants.py --variants pooled --seeds 0 1 2 3 4 5 6 7 8 9`
  (`ratios_to_best` of its rows, the GIM `gim[pooled, posterior]`);
- the Sachs target AUROCs "0.598 / 0.639 to 0.780 / 0.808 (... mean-shift detector 0.688)":
  `gim-ppl bench --sachs` (means over its keys 0–2).

A number matches when the rerun value, rounded to the README's decimals, is the README's
number. `--check` runs everything at full size (hours on 2 CPU cores; a benchmark, not CI)
and exits 1 on a mismatch; `--records` compares with the raw records stored in
benchmarks/results (no fitting); `--quick` runs each command at a tiny size (the demo: its
exact column only) and checks only that every claimed number was found in the README and
read from the command's output (tests/test_docs_blocks.py).

    python benchmarks/readme_numbers.py --check            # rerun at full size, compare
    python benchmarks/readme_numbers.py --records          # the stored records vs the README
    python benchmarks/readme_numbers.py --quick            # smoke run (CI)
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import math
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PV_SEEDS = [str(s) for s in range(10)]
PV_GIM = "gim[pooled, posterior]"
SACHS_METHODS = "gim_exact,gim_relaxed_mc,gim_exact_coarsened,gim_relaxed_mc_coarsened,mean_shift"

#: The demo table's rows in the README (label up to the first "(" or the whole label) and
#: the rows `gim-ppl demo` prints, in the same order.
DEMO_ROWS = [
    ("target AUROC, training perturbations (posterior",
     "target AUROC, train perturbations (posterior)"),
    ("target AUROC, training perturbations (prior", "target AUROC, train perturbations (prior"),
    ("target AUROC, 20 unseen perturbations", "target AUROC, unseen perturbations"),
    ("mean error, partial OOD", "mean error, partial OOD (new doses)"),
    ("— best simple baseline (the drug's own", "mean error, partial OOD, best simple baseline"),
    ("— control prediction", "mean error, partial OOD, control prediction"),
    ("mean error, full OOD", "mean error, full OOD (new perturbations)"),
    ("— best simple baseline (ridge", "mean error, full OOD, best simple baseline"),
    ("— control prediction", "mean error, full OOD, control prediction"),
    ("fit wall time (s)", "fit wall time (s)"),
]


@dataclass(frozen=True)
class Claim:
    """A number of the README: where it is, which command's value it is."""

    name: str  # what the number is, for the report
    source: str  # "demo", "prediction_variants" or "sachs"
    key: str  # the value's key in the source's `extract`
    readme: str  # the README's text of the number
    timing: bool = False  # a wall time: reported, not compared


def _number(pattern: str, text: str) -> str:
    m = re.search(pattern, text, re.S)
    if m is None:
        raise ValueError(f"README.md: no match for {pattern!r}; update {Path(__file__).name}")
    return m[1]


def readme_claims(text: str) -> list[Claim]:
    """Every checked number of the README, read from its text."""
    claims = []
    table = text[text.index("## Demo results"):].split("\n\n")[2]
    lines = [line for line in table.splitlines() if line.startswith("| ")][1:]
    lines = [line for line in lines if not line.startswith("|---")]
    if len(lines) != len(DEMO_ROWS):
        raise ValueError(f"README.md: the demo table has {len(lines)} rows, expected "
                         f"{len(DEMO_ROWS)}; update DEMO_ROWS")
    for line, (label, demo_label) in zip(lines, DEMO_ROWS, strict=True):
        cells = [c.strip().strip("*") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if not cells[0].startswith(label):
            raise ValueError(f"README.md: demo row {cells[0]!r} is not {label!r}")
        for column, value in zip(("exact", "relaxed_mc"), cells[1:], strict=True):
            claims.append(Claim(f"demo: {cells[0]} [{column}]", "demo",
                                f"{demo_label}|{column}", value,
                                timing=label.startswith("fit wall time")))
    exact_posterior = f"{DEMO_ROWS[0][1]}|exact"
    claims.append(Claim("snippet on seed 0 (demo, exact, posterior)", "demo", exact_posterior,
                        _number(r"the snippet above\s+reaches\s+([0-9.]+)", text)))
    claims.append(Claim("unseen-target AUROC on this seed (demo, exact)", "demo",
                        f"{DEMO_ROWS[2][1]}|exact",
                        _number(r"Unseen-target AUROC\s+fell from [0-9.]+ (?:\([^)]*\)\s+)?"
                                r"to ([0-9.]+)", text)))
    pv = {
        "train target AUROC, seeds 0–9": ("target_auroc_train",
                                          r"training target AUROC is ([0-9.]+) on average"),
        "new doses: mean ratio": ("partial_ood_mean_error.mean",
                                  r"every time \(([0-9.]+)× on average\)"),
        "new doses: seeds won": ("partial_ood_mean_error.won_all", r"does\s+so on new doses of "
                                 r"known drugs (every time)"),
        "new drugs: seeds won": ("full_ood_mean_error.won", r"new drugs only on ([0-9]+) of"),
        "new drugs: seeds": ("full_ood_mean_error.n", r"new drugs only on [0-9]+ of\s+([0-9]+)"),
        "new drugs: mean ratio": ("full_ood_mean_error.mean", r"seeds \(([0-9.]+)× on average, "
                                  r"worst"),
        "new drugs: worst ratio": ("full_ood_mean_error.worst", r"on average, worst ([0-9.]+)×"),
    }
    claims += [Claim(name, "prediction_variants", key, _number(pattern, text))
               for name, (key, pattern) in pv.items()]
    sachs = _number(r"target AUROC goes\s+from ([0-9.]+ / [0-9.]+ to [0-9.]+ / [0-9.]+)", text)
    before, after = sachs.split(" to ")
    values = [*before.split(" / "), *after.split(" / ")]
    for method, value in zip(SACHS_METHODS.split(",")[:4], values, strict=True):
        claims.append(Claim(f"Sachs target AUROC, {method}", "sachs", method, value))
    claims.append(Claim("Sachs target AUROC, mean_shift", "sachs", "mean_shift",
                        _number(r"mean-shift\s+detector ([0-9.]+)\)", text)))
    return claims


# --- the commands, and the values read from what they write --------------------------------


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def demo_values(stdout: str) -> dict:
    """`{"<demo row label>|<column>": value}` from `gim-ppl demo`'s printed table."""
    rows = [line for line in stdout.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in rows[0].split("|")[2:-1]]
    values = {}
    for line in rows[1:]:
        label, *cells = [c.strip() for c in line.split("|")[1:-1]]
        demo_label = next((d for _, d in DEMO_ROWS if label.startswith(d)), None)
        if demo_label is not None:
            values.update({f"{demo_label}|{c}": float(v)
                           for c, v in zip(header, cells, strict=True)})
    return values


def run_demo(quick: bool, work: Path) -> dict:
    from gim_ppl.cli import main

    # quick: the exact column only (the relaxed marginal's compilation alone takes a minute)
    quick_argv = ["--steps", "20", "--marginal", "exact"]
    argv = ["demo", "--no-progress"] + (quick_argv if quick else [])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        if main(argv) != 0:
            raise RuntimeError(f"gim-ppl {' '.join(argv)} failed")
    return demo_values(out.getvalue())


def pv_values(rows: list[dict]) -> dict:
    summary = _load("prediction_variants").ratios_to_best(rows)[PV_GIM]
    values = {"target_auroc_train": summary["target_auroc_train"]}
    for metric in ("partial_ood_mean_error", "full_ood_mean_error"):
        values.update({f"{metric}.{k}": v for k, v in summary[metric].items()})
        values[f"{metric}.won_all"] = ("every time" if summary[metric]["won"]
                                       == summary[metric]["n"] else "not every time")
    return values


def run_prediction_variants(quick: bool, work: Path) -> dict:
    argv = (["--quick"] if quick else ["--variants", "pooled", "--seeds", *PV_SEEDS])
    _load("prediction_variants").main([*argv, "--out", str(work / "pv")])
    rows = json.loads((work / "pv" / "prediction_variants.json").read_text())["rows"]
    return pv_values(rows)


def sachs_values(record: dict) -> dict:
    return {method: record["summary"][method]["target_auroc"]["mean"]
            for method in SACHS_METHODS.split(",")}


def run_sachs(quick: bool, work: Path) -> dict:
    from gim_ppl.cli import main

    argv = ["bench", "--sachs", "--methods", SACHS_METHODS, "--no-progress",
            "--out", str(work / "sachs")]
    if main(argv + (["--steps", "20", "--keys", "0"] if quick else [])) != 0:
        raise RuntimeError("gim-ppl bench --sachs failed")
    return sachs_values(json.loads((work / "sachs" / "sachs.json").read_text()))


RUN = {"demo": run_demo, "prediction_variants": run_prediction_variants, "sachs": run_sachs}


def records() -> dict:
    """The sources' values from the raw records stored in benchmarks/results (the demo has
    none)."""
    results = ROOT / "benchmarks" / "results"
    pv = json.loads((results / "prediction_variants" / "pooled_seeds0-9_moments.json")
                    .read_text())["rows"]
    return {"prediction_variants": pv_values(pv),
            "sachs": sachs_values(json.loads((results / "sachs" / "sachs.json").read_text()))}


# --- the comparison -------------------------------------------------------------------------


def matches(readme: str, value) -> bool:
    """Whether `value` rounded to the README's decimals is the README's number."""
    if isinstance(value, str) or not re.fullmatch(r"[0-9]+(\.[0-9]+)?", readme):
        return str(value) == readme
    decimals = len(readme.split(".")[1]) if "." in readme else 0
    return math.isfinite(value) and f"{value:.{decimals}f}" == readme


def compare(claims: list[Claim], values: dict) -> list[dict]:
    """One row per claim: the README's number, the command's value, whether they match."""
    rows = []
    for claim in claims:
        value = values.get(claim.source, {}).get(claim.key)
        rows.append({"claim": claim.name, "source": claim.source, "readme": claim.readme,
                     "value": value, "timing": claim.timing,
                     "match": None if value is None or claim.timing
                     else matches(claim.readme, value)})
    return rows


def report(rows: list[dict]) -> str:
    lines = ["| claim | source | README | rerun | match |", "|---|---|---|---|---|"]
    for r in rows:
        value = r["value"] if isinstance(r["value"], str | None) else f"{r['value']:.4g}"
        verdict = ("timing, not compared" if r["timing"] else "not run" if r["match"] is None
                   else "yes" if r["match"] else "**NO**")
        lines.append(f"| {r['claim']} | {r['source']} | {r['readme']} | {value} | {verdict} |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """This script's arguments (tests/test_docs_blocks.py parses the docs' command lines
    with it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true",
                      help="rerun every producing command at full size and compare")
    mode.add_argument("--records", action="store_true",
                      help="compare with the raw records in benchmarks/results (no fitting)")
    mode.add_argument("--quick", action="store_true",
                      help="every command at a tiny size: checks reading, not the numbers")
    parser.add_argument("--sources", nargs="+", choices=list(RUN), default=list(RUN),
                        help="which commands to run (default: all)")
    parser.add_argument("--out", help="also write the comparison as JSON to this file (with "
                                      "its command, commit and machine)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    claims = [c for c in readme_claims(README.read_text()) if c.source in args.sources]
    if args.records:
        values = {k: v for k, v in records().items() if k in args.sources}
    else:
        with tempfile.TemporaryDirectory() as work:
            values = {name: RUN[name](args.quick, Path(work)) for name in args.sources}
    rows = compare(claims, values)
    print(report(rows))
    if args.out:
        from gim_ppl.cli.machine import provenance

        command = "python benchmarks/readme_numbers.py " + " ".join(
            sys.argv[1:] if argv is None else argv)
        Path(args.out).write_text(json.dumps({**provenance(command), "rows": rows}, indent=1))
    if args.quick:  # tiny runs: every number must be read, none need agree
        missing = [r["claim"] for r in rows if r["value"] is None
                   and not (r["source"] == "demo" and r["claim"].endswith("[relaxed_mc]"))]
        if missing:
            print(f"not read from the commands' output: {missing}", file=sys.stderr)
        return 1 if missing else 0
    checked = [r for r in rows if r["match"] is not None]
    return 0 if checked and all(r["match"] for r in checked) else 1


if __name__ == "__main__":
    raise SystemExit(main())
