"""`gim_ppl.evaluation.report`: the summaries, tables and records every benchmark shares."""

import json

import numpy as np
import pytest

from gim_ppl.evaluation import report


def test_describe_gives_mean_spread_and_worst():
    got = report.describe([0.9, 0.7, 0.8], worst="min")
    assert got["mean"] == pytest.approx(0.8) and got["n"] == 3 and got["worst"] == 0.7
    assert got["sd"] == pytest.approx(np.std([0.9, 0.7, 0.8], ddof=1))
    assert report.describe([0.9, 0.7], ddof=0)["sd"] == pytest.approx(0.1)
    assert report.describe([0.5])["sd"] == 0.0  # one value: no spread
    assert report.describe([]) is None
    assert report.describe([1.0, 3.0], worst="max")["worst"] == 3.0
    with pytest.raises(ValueError, match="worst"):
        report.describe([1.0], worst="best")


def test_summarise_groups_rows_and_skips_text_and_missing_values():
    rows = [{"method": "a", "seed": 0, "err": 1.0, "err_by": "x", "auroc": None},
            {"method": "b", "seed": 0, "err": 2.0},
            {"method": "a", "seed": 1, "err": 3.0, "auroc": 0.5}]
    summary = report.summarise(rows)
    assert list(summary) == ["a", "b"]
    assert set(summary["a"]) == {"err"}  # seed ignored, text and None-valued fields left out
    assert summary["a"]["err"]["mean"] == 2.0 and summary["a"]["err"]["n"] == 2
    by_metric = report.summarise(rows, metrics=("err", "auroc"))
    assert by_metric["a"]["auroc"]["n"] == 1 and by_metric["b"]["auroc"] is None


def test_tables_and_cells():
    assert report.format_stat(None) == report.MISSING
    assert report.format_stat({"mean": 0.5, "sd": 0.1, "n": 1}) == "0.500"
    assert report.format_stat({"mean": 0.5, "sd": 0.1, "n": 1}, always_spread=True) == \
        "0.500 ± 0.100"
    assert report.format_stat({"mean": 0.002, "sd": 0.001, "n": 2}, 1, scale=1e3) == \
        "2.0 ± 1.0"
    assert report.markdown_table(["a", "b"], [["1", ""]]) == "| a | b |\n|---|---|\n| 1 | |"
    summary = {"m": {"x": {"mean": 1.0, "sd": 0.0, "n": 1}}}
    assert report.summary_table(summary, [("x", "X"), ("y", "Y")]).splitlines()[-1] == \
        "| m | 1.000 | — |"


def test_write_report_carries_the_provenance_inside(tmp_path):
    record = {"rows": [{"value": np.float32(0.5)}], "array": np.arange(2)}
    prov = {"command": "gim-ppl bench perf", "commit": "abc123", "machine": "here"}
    json_path, md_path = report.write_report(tmp_path / "out", "perf", record, "# t\n",
                                             provenance=prov)
    got = json.loads(json_path.read_text())
    assert got["command"] == "gim-ppl bench perf" and got["commit"] == "abc123"
    assert got["rows"][0]["value"] == 0.5 and got["array"] == [0, 1]
    assert md_path.read_text() == "# t\n"
    assert report.provenance_line(prov) == "Command: `gim-ppl bench perf`; commit abc123; here."
