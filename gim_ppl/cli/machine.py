"""`machine_description`: the machine a benchmark or fit ran on (CPU, cores, Python, JAX
backend), printed and recorded by the `demo`, `bench` and `fit` commands; `write_record`: a
benchmark script's results as JSON and Markdown with their command, commit and machine
(`provenance`), its rows as a Markdown table (`rows_markdown`)."""

from __future__ import annotations

import os
import platform
import subprocess


def machine_description() -> str:
    """CPU model, core count and JAX backend, for benchmark output."""
    import jax  # here, not at the top: the commands check their arguments before jax loads

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if "model name" in line)
    except (OSError, StopIteration):
        pass
    device = jax.devices()[0]
    backend = device.platform if device.platform == "cpu" else (
        f"{device.platform} ({device.device_kind})")
    return (f"{cpu}, {os.cpu_count()} cores; python {platform.python_version()}, "
            f"jax {jax.__version__} on {backend}")


def current_commit() -> str:
    """The short git commit of the working directory, with "+changes" when tracked files
    differ from it, or "unknown" outside a checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=False).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                 capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        out, changed = "", ""
    return (out + ("+changes" if changed else "")) if out else "unknown"


#: The commit when this module was first imported: a benchmark imports it at its start, so a
#: run that outlives a commit records the code it ran, not the commit it finished under.
COMMIT_AT_IMPORT = current_commit()


def provenance(command: str) -> dict:
    """`{"command", "commit", "machine"}`: what every benchmark record carries inside (the
    commit of `COMMIT_AT_IMPORT`)."""
    return {"command": command, "commit": COMMIT_AT_IMPORT, "machine": machine_description()}


def rows_markdown(rows, columns=None) -> str:
    """A Markdown table of `rows` (dicts), one column per key of `columns` (default: the
    first row's keys whose values are numbers or strings); floats to 4 significant digits."""
    if not rows:
        return "(no rows)"
    columns = list(columns or [k for k, v in rows[0].items()
                               if isinstance(v, int | float | str) and k != "command"])

    def cell(value):
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    return "\n".join([f"| {' | '.join(columns)} |", "|" + "---|" * len(columns),
                      *(f"| {' | '.join(cell(r.get(c, '')) for c in columns)} |"
                        for r in rows)])


def write_record(out_dir, stem: str, command: str, title: str, table: str,
                 **fields) -> dict:
    """Write `{stem}.json` (command, commit, machine and `fields`) and `{stem}.md` (`title`,
    the provenance line and the Markdown `table`) into `out_dir` (created), by
    `gim_ppl.evaluation.report.write_report`; return the record."""
    from gim_ppl.evaluation.report import provenance_line, write_report

    record = {**provenance(command), **fields}
    write_report(out_dir, stem, record, f"# {title}\n\n{provenance_line(record)}\n\n{table}\n")
    return record
