"""Splice the tables of a Sachs benchmark record into a docs page, with the goal check.

`gim-ppl bench sachs` writes `sachs.json` and `sachs.md`; this script rewrites only the block
between the `sachs-tables` markers of a page (docs/sachs.md) from that record and adds the
goal check computed from its summary: the GIM's target AUROC above every peer's and the
mean-shift detector's, its graph AUPRC at least the best peer's. The prose around the block
is written by hand and kept.

    gim-ppl bench sachs --out benchmarks/results/sachs
    python dev/sachs_page.py benchmarks/results/sachs/sachs.json --page docs/sachs.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

BEGIN, END = "<!-- sachs-tables:begin -->", "<!-- sachs-tables:end -->"
PEERS = ("ut_igsp", "gies")


def goal_check(summary: dict) -> str:
    """Whether the goal is met, computed from a Sachs `summary`: GIM target AUROC above every
    peer's and the trivial detector's; GIM graph AUPRC at least the best peer's."""
    def mean(name, score):
        stat = summary.get(name, {}).get(score)
        return None if stat is None else stat["mean"]

    gims = [m for m in summary if m.startswith("gim_") and not m.endswith("_effect")
            and mean(m, "target_auroc") is not None]
    others = [m for m in (*PEERS, "mean_shift") if m in summary]
    if not gims:
        return "Goal check: no GIM row."
    best_gim_auroc = max(mean(m, "target_auroc") for m in gims)
    best_gim_auprc = max(mean(m, "graph_auprc") for m in gims)
    auroc_others = [mean(m, "target_auroc") for m in others
                    if mean(m, "target_auroc") is not None]
    auprc_peers = [mean(m, "graph_auprc") for m in PEERS if mean(m, "graph_auprc") is not None]
    target_ok = all(best_gim_auroc > v for v in auroc_others)
    graph_ok = all(best_gim_auprc >= v for v in auprc_peers)
    return (f"Goal check (computed): best GIM target AUROC {best_gim_auroc:.3f} vs others "
            f"{[round(v, 3) for v in auroc_others]} → {'met' if target_ok else 'NOT met'}; "
            f"best GIM graph AUPRC {best_gim_auprc:.3f} vs peers "
            f"{[round(v, 3) for v in auprc_peers]} → {'met' if graph_ok else 'NOT met'}.")


def page_block(record: dict) -> str:
    """The generated block of the page: the record's tables, the goal check after the score
    table, between the markers."""
    from gim_ppl.evaluation.sachs_benchmark import markdown_table, sachs_markdown

    tables = sachs_markdown(record, provenance=record)
    score_table = markdown_table(record["summary"])
    tables = tables.replace(score_table, f"{score_table}\n\n{goal_check(record['summary'])}", 1)
    return f"{BEGIN}\n{tables.rstrip()}\n{END}"


def splice(page_text: str, block: str) -> str:
    """`page_text` with its block between the markers replaced by `block` (the prose around
    it kept); a new page with a title when it has no markers."""
    if BEGIN in page_text and END in page_text:
        head, rest = page_text.split(BEGIN, 1)
        return head + block + rest.split(END, 1)[1]
    return f"# GIM on the Sachs et al. (2005) data\n\n{block}\n"


def build_parser() -> argparse.ArgumentParser:
    """This script's arguments (tests/test_docs_blocks.py parses the docs' command lines
    with it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("record", help="sachs.json written by `gim-ppl bench sachs`")
    parser.add_argument("--page", default="docs/sachs.md",
                        help="Markdown page to rewrite (default: %(default)s)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    record = json.loads(Path(args.record).read_text())
    page = Path(args.page)
    page.write_text(splice(page.read_text() if page.exists() else "", page_block(record)))
    print(f"wrote the tables of {args.record} into {page}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
