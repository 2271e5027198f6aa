"""The one report of every benchmark pipeline (protocol, perf, stability, Sachs, learning
curve): rows of scores summarised per method (mean, spread, worst), Markdown tables, and a
JSON record that carries its command, commit and machine inside (`write_report`).

A row is a flat dict (`{"method": ..., "seed": ..., "<metric>": float, ...}`); a summary is
`{group: {metric: {"mean", "sd", "n"}}}`, the statistics of one metric over the rows of one
group (seeds, keys). The pipelines differ only in what they put in rows and which columns
they show.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from numbers import Real
from pathlib import Path

import numpy as np

#: What a table cell shows where a metric does not apply or was not run.
MISSING = "—"


def describe(values: Iterable[float], *, ddof: int = 1, worst: str | None = None) -> dict | None:
    """`{"mean", "sd", "n"}` of `values` (None when there are none); `sd` with `ddof` (1: the
    sample sd across seeds; 0: the population sd), 0 when there are not more than `ddof`
    values. `worst="min"` or `"max"` adds the worst value (the smallest AUROC, the largest
    error): claims rest on the spread and the worst case, not the best run."""
    vals = np.array(list(values), dtype=float)
    if not vals.size:
        return None
    out = {"mean": float(vals.mean()),
           "sd": float(vals.std(ddof=ddof)) if vals.size > ddof else 0.0, "n": int(vals.size)}
    if worst is not None:
        if worst not in ("min", "max"):
            raise ValueError(f"worst must be 'min' or 'max', got {worst!r}")
        out["worst"] = float(vals.min() if worst == "min" else vals.max())
    return out


def _is_score(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def summarise(rows: Sequence[Mapping], *, by: str = "method",
              metrics: Sequence[str] | None = None, ignore: Sequence[str] = ("seed",),
              ddof: int = 1) -> dict:
    """`{group: {metric: describe(values)}}` over `rows` grouped by `row[by]` (groups in order
    of first appearance). `metrics`: the metrics to summarise (a metric no row of a group has
    gives None); default: the numeric fields of the group's first row except `by` and
    `ignore`, in their order. Values that are missing or None are left out."""
    out: dict = {}
    for group in dict.fromkeys(r[by] for r in rows):
        mine = [r for r in rows if r[by] == group]
        names = metrics if metrics is not None else [
            k for k, v in mine[0].items() if k != by and k not in ignore and _is_score(v)]
        out[group] = {k: describe((r[k] for r in mine if r.get(k) is not None), ddof=ddof)
                      for k in names}
    return out


def format_stat(stat: Mapping | None, digits: int = 3, *, scale: float = 1.0,
                always_spread: bool = False) -> str:
    """A `describe` result as `mean ± sd` (the mean alone from one value, which has no
    spread, unless `always_spread`), each times `scale`; `MISSING` for None."""
    if stat is None:
        return MISSING
    text = f"{stat['mean'] * scale:.{digits}f}"
    if stat["n"] > 1 or always_spread:
        text += f" ± {stat['sd'] * scale:.{digits}f}"
    return text


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table of `header` and `rows` of cell texts (an empty cell stays empty)."""
    def line(cells):
        return "|" + "|".join(f" {c} " if c != "" else " " for c in cells) + "|"

    return "\n".join([line(header), "|" + "---|" * len(header), *(line(r) for r in rows)])


def summary_table(summary: Mapping, columns: Sequence[tuple[str, str]], *,
                  cell: Callable[[str, Mapping | None], str] | None = None,
                  label: str = "method") -> str:
    """One row per group of a `summarise` result, one column per `(metric, heading)` of
    `columns`; `cell(metric, stat)` formats a statistic (default `format_stat`), `MISSING`
    where a group lacks the metric."""
    cell = cell or (lambda _, stat: format_stat(stat))
    return markdown_table(
        [label, *(heading for _, heading in columns)],
        ([str(group), *(cell(metric, stats.get(metric)) if metric in stats else MISSING
                        for metric, _ in columns)] for group, stats in summary.items()))


def jsonable(value):
    """`json.dumps` default: numpy arrays and scalars as lists and numbers."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def provenance_line(record: Mapping) -> str:
    """`Command: ...; commit ...; machine.` from the provenance fields a record has."""
    parts = [f"Command: `{record['command']}`" if record.get("command") else "",
             f"commit {record['commit']}" if record.get("commit") else "",
             str(record.get("machine") or "")]
    return "; ".join(p for p in parts if p) + "."


def write_report(out_dir, stem: str, record: Mapping, markdown: str, *,
                 provenance: Mapping | None = None) -> tuple[Path, Path]:
    """Write `{stem}.json` (`record` with the `provenance` fields — command, commit, machine —
    inside) and `{stem}.md` (`markdown`) into `out_dir` (created); return both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
    json_path.write_text(json.dumps({**record, **(provenance or {})}, indent=2,
                                    default=jsonable))
    md_path.write_text(markdown)
    return json_path, md_path


__all__ = ["MISSING", "describe", "format_stat", "jsonable", "markdown_table",
           "provenance_line", "summarise", "summary_table", "write_report"]
