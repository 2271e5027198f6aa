"""A small hand-rolled mutation check: plant one plausible slip at a time in a copy of the
package and see the tests that should notice it fail (issue 26, "tests that bite").

Each `Mutant(name, path, old, new, tests)` replaces the exact source snippet `old` (it must
occur exactly once in `path`) by its slip `new`, in a fresh copy of `gim_ppl/`, `tests/` and
`pyproject.toml` under a temporary folder, then runs

    python -m pytest -x -q -p no:xdist -o addopts= <tests>

there, with the copy first on `sys.path` (the runner checks that `import gim_ppl` resolves to
the copy before it runs the tests). A mutant is *caught* when pytest reports failing tests
(exit status 1); it *survived* when they pass. Any other exit status (no tests collected, a
usage error, an import error at collection) is an *error*: the mutant says nothing.

Before the mutants, the union of their tests runs once on an unmutated copy (`--no-baseline`
skips it): a test that already fails would "catch" every mutant.

Usage:
    python dev/mutants.py              # every mutant; exit 1 if any survives or errs
    python dev/mutants.py --list       # names, files and tests
    python dev/mutants.py --only NAME  # one mutant (repeat --only for several)

Not run in CI (a few minutes on two cores); run it before you stop (CONTRIBUTING.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COPIED = ("gim_ppl", "tests", "pyproject.toml")
PYTEST = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:xdist", "-o", "addopts=",
          "-p", "no:cacheprovider", "--no-header"]


@dataclass(frozen=True)
class Mutant:
    """One slip: `old` (an exact snippet, unique in `path`) becomes `new`; `tests` are pytest
    node ids or files, relative to the repository root, expected to fail."""

    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


T_LIK = "tests/core/test_likelihood.py"
T_EXP = "tests/design/test_experiments.py"
T_QUE = "tests/design/test_queries.py"
T_FUZZ = "tests/test_fuzz.py::test_from_arrays_validates_or_builds_finite_data"
T_FUZZ_VALUES = "tests/test_fuzz.py::test_a_broken_value_is_named_by_its_own_argument"

MUTANTS = [
    # --- issue 26's list ------------------------------------------------------------------
    Mutant("shared_targets_sign", "gim_ppl/core/likelihood.py",
           "post = (logits + delta)[groups.index]",
           "post = (logits - delta)[groups.index]",
           (f"{T_LIK}::test_shared_target_posterior_matches_enumeration_over_a_perturbations"
            "_contexts",)),
    Mutant("init_jitter_constrained", "gim_ppl/inference/init.py",
           "return transform(unconstrained + jitter * noise)",
           "return value + jitter * noise",
           ("tests/inference/test_init.py::test_jitter_is_multiplicative_on_positive_sites_whatever_their"
            "_scale",)),
    Mutant("dose_message_without_dose", "gim_ppl/data.py",
           'raise ValueError(f"dose must be >= 0; negative at contexts {_rows(bad)}")',
           'raise ValueError(f"must be >= 0; negative at contexts {_rows(bad)}")',
           (T_FUZZ_VALUES, T_FUZZ)),
    Mutant("dose_nonfinite_message_without_dose", "gim_ppl/data.py",
           'raise ValueError(f"dose has non-finite values at contexts {_rows(bad)}")',
           'raise ValueError(f"non-finite values at contexts {_rows(bad)}")',
           (T_FUZZ_VALUES, T_FUZZ)),
    # a copy-paste slip that names a partner array: the oracle accepted any partner's name
    Mutant("dose_message_names_features", "gim_ppl/data.py",
           'raise ValueError(f"dose has non-finite values at contexts {_rows(bad)}")',
           'raise ValueError(f"features has non-finite values at contexts {_rows(bad)}")',
           (T_FUZZ_VALUES, T_FUZZ)),
    Mutant("commit_no_restore", "gim_ppl/cli/outputs.py",
           "            if old is not None:\n                os.replace(old, self.path)\n"
           "            raise",
           "            raise",
           ("tests/cli/test_fit_command.py::test_overwrite_is_complete_or_absent_when_the_final_rename"
            "_fails",)),
    Mutant("targets_eig_ignores_inner_weights", "gim_ppl/design/experiments.py",
           'after = jnp.einsum("cnm,cnmd->cnd", w, post)',
           "after = post.mean(axis=2)",
           (f"{T_EXP}::test_two_differing_draws_one_binary_unknown_give_log_2",)),
    Mutant("graph_eig_is_the_prior", "gim_ppl/design/experiments.py",
           'after = jnp.einsum("cnm,mij->cnij", w, edges)',
           "after = jnp.broadcast_to(prior, w.shape[:2] + prior.shape)",
           (f"{T_EXP}::test_two_differing_draws_one_binary_unknown_give_log_2",)),
    Mutant("query_cells_use_draw_0", "gim_ppl/design/queries.py",
           "draws = np.tile(np.arange(n_cells) * n_draws // n_cells, contexts.n_contexts)",
           "draws = np.tile(np.arange(n_cells) * 0, contexts.n_contexts)",
           (f"{T_QUE}::test_cells_of_a_query_use_every_posterior_draw_in_turn",)),
    # under "shift" this slip changes nothing (t_b·s_b still enters through the noise);
    # under "replace" a variable hit only by `second` keeps its mechanism
    Mutant("combine_replace_ignores_second_targets", "gim_ppl/design/queries.py",
           "union = 1.0 - (1.0 - t_a) * (1.0 - t_b)",
           "union = t_a",
           (f"{T_QUE}::test_combination_under_replace_sets_targets_to_the_summed_hill_means",)),
    Mutant("demo_metric_key_misspelt", "gim_ppl/cli/demo.py",
           '"target_auroc_full_ood"),',
           '"target_auroc_ful_ood"),',
           ("tests/cli/test_demo.py",)),
    # item 10: the old assertion `targets[:, obs] >= 0` could not fail whatever the mask did
    Mutant("observational_cells_get_targets", "gim_ppl/model.py",
           "targets = jnp.where(data.observational[:, None], 0.0, targets.astype(shift.dtype))",
           "targets = targets.astype(shift.dtype)",
           ("tests/test_model.py::test_prior_predictive_with_plain_numpyro",)),
    # --- our own, for the modules whose tests changed with them ---------------------------
    # canary: a slip the oldest enumeration test must catch (proves the copy is imported)
    Mutant("per_context_posterior_sign", "gim_ppl/core/likelihood.py",
           "post = target_logits + power * (l1 - l0)",
           "post = target_logits - power * (l1 - l0)",
           (f"{T_LIK}::test_posterior_targets_match_enumeration_marginals",)),
    # the bug the stricter fuzz oracle found: zero cells raised numpy's reshape error
    Mutant("zero_cells_reshape_error", "gim_ppl/data.py",
           "lost.reshape(arr.shape[0], math.prod(arr.shape[1:]))",
           "lost.reshape(arr.shape[0], -1)",
           ("tests/test_data.py::test_no_cells_at_all_is_named_not_a_reshape_error",)),
    Mutant("zero_cells_not_named", "gim_ppl/data.py",
           "if require_cells and x_arr.shape[0] == 0:",
           "if False:",
           ("tests/test_data.py::test_no_cells_at_all_is_named_not_a_reshape_error",)),
    Mutant("mean_shift_sample_sd", "gim_ppl/evaluation/stability.py",
           "/ np.maximum(control.std(0), 1e-12)",
           "/ np.maximum(control.std(0, ddof=1), 1e-12)",
           ("tests/evaluation/test_stability.py::test_mean_shift_detector_scores_by_hand",)),
    Mutant("mean_shift_scores_observational", "gim_ppl/evaluation/stability.py",
           "return np.where(np.asarray(data.observational)[:, None], 0.0, scores)",
           "return scores",
           ("tests/evaluation/test_stability.py::test_mean_shift_detector_scores_by_hand",)),
    Mutant("auroc_ties_count_as_wins", "gim_ppl/evaluation/metrics.py",
           'return float(require("sklearn.metrics").roc_auc_score(y, s))',
           "return float(np.mean(s[y][:, None] >= s[~y][None, :]))",
           ("tests/evaluation/test_stability.py::test_mean_shift_detector_scores_by_hand",
            "tests/evaluation/test_metrics.py")),
    Mutant("ard_scale_ignored", "gim_ppl/core/interventions.py",
           'scale = params[f"{key}_feature_scale"]',
           'scale = jnp.ones_like(params[f"{key}_feature_scale"])',
           ("tests/core/test_interventions.py::test_shrinkage_scales_closed_form",)),
    Mutant("gies_targets_off_by_one", "gim_ppl/evaluation/sachs_benchmark.py",
           "known = [[s.var_names.index(p) for p in c.targets]",
           "known = [[(s.var_names.index(p) + 1) % 11 for p in c.targets]",
           ("tests/datasets/test_sachs_cells.py::test_run_gies_recovers_a_planted_dag_with_its_known_targets",)),
    Mutant("gies_cells_to_wrong_condition", "gim_ppl/evaluation/sachs_benchmark.py",
           "[x[ctx == k] for k in np.flatnonzero(~obs)]",
           "[x[ctx == k] for k in np.flatnonzero(~obs)][::-1]",
           ("tests/datasets/test_sachs_cells.py::test_run_gies_recovers_a_planted_dag_with_its_known_targets",)),
    Mutant("excess_variance_keeps_sampling_noise", "gim_ppl/inference/intervals.py",
           "return np.maximum((r2 - held.var - held.se2).mean(0), 0.0)",
           "return np.maximum((r2 - held.var).mean(0), 0.0)",
           ("tests/inference/test_intervals.py::test_excess_variance_and_sampling_variance_by_hand",)),
    Mutant("mean_intervals_kind_swapped", "gim_ppl/inference/intervals.py",
           'kind = np.where(obs, "observational", np.where(known, "new_dose", "new_perturbation"))',
           'kind = np.where(obs, "observational", np.where(known, "new_perturbation", "new_dose"))',
           ("tests/inference/test_intervals.py::test_mean_intervals_add_the_calibrated_variance_by_kind",)),
    Mutant("context_mean_draws_per_cell_targets", "gim_ppl/readout.py",
           "targets = jnp.where(observational, 0.0, targets)",
           "targets = jnp.where(observational, 0.0, jax.nn.sigmoid(logits))",
           ("tests/inference/test_intervals.py::test_context_mean_draws_are_target_sets_drawn_at_their"
            "_probabilities",)),
    Mutant("vsbc_shift_ignored", "gim_ppl/evaluation/calibration.py",
           'return {k: v + self.shift.get(k.removesuffix("_auto_loc"), 0.0)',
           'return {k: v + 0.0 * self.shift.get(k.removesuffix("_auto_loc"), 0.0)',
           ("tests/evaluation/test_calibration.py::test_vsbc_passes_the_fitted_guide_and_catches_half_a"
            "_prior_sd",)),
    Mutant("checkpoint_model_settings_listed_by_hand", "gim_ppl/inference/checkpoint.py",
           "    for field in dataclasses.fields(model):",
           "    for field in [f for f in dataclasses.fields(model) if f.name in (\"n_vars\", "
           "\"mechanism\", \"priors\", \"pooled\", \"coarsening\")]:",
           ("tests/inference/test_checkpoint.py::test_checkpoint_of_other_settings_or_data_is_refused",
            "tests/inference/test_checkpoint.py::test_the_model_fingerprint_covers_every_attribute")),
    Mutant("cli_flag_from_the_prose", "gim_ppl/cli/user_errors.py",
           "    return f\"{flag}: {text}\"",
           "    return text",
           ("tests/test_errors.py::test_the_cli_names_the_flag_from_the_argument_not_the"
            "_prose",)),
    # minibatches of whole perturbations: the mixture weighted, not its sums; the control
    # cells' weight; draws without replacement
    Mutant("perturbation_weight_ignored", "gim_ppl/core/likelihood.py",
           "    return obs_ll + jnp.sum(jnp.where(mask, weight * mix, 0.0))",
           "    return obs_ll + jnp.sum(jnp.where(mask, mix, 0.0))",
           ("tests/inference/test_batching.py::test_batch_loglik_is_unbiased_over_the_draws",)),
    Mutant("control_cells_unweighted", "gim_ppl/inference/batching.py",
           "n_control / index.n_control_batch, dtype)",
           "1.0, dtype)",
           ("tests/inference/test_batching.py::test_batch_draws_whole_perturbations_and_subsamples"
            "_control_cells",
            "tests/inference/test_batching.py::test_batch_loglik_is_unbiased_over_the_draws")),
    Mutant("perturbations_with_replacement", "gim_ppl/inference/batching.py",
           "chosen = jax.random.choice(key_p, n_units, (index.size,), replace=False)",
           "chosen = jax.random.choice(key_p, n_units, (index.size,), replace=True)",
           ("tests/inference/test_batching.py::test_batch_draws_whole_perturbations_and_subsamples"
            "_control_cells",)),
]


def copy_tree(dest: Path) -> None:
    """The package, its tests and the pytest configuration, without caches."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", ".pytest_cache")
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            shutil.copy2(src, dest / name)


def apply(mutant: Mutant, dest: Path) -> None:
    """Replace the one occurrence of `mutant.old` in the copy; ValueError unless exactly one."""
    path = dest / mutant.path
    text = path.read_text()
    count = text.count(mutant.old)
    if count != 1:
        raise ValueError(f"mutant {mutant.name}: `old` occurs {count} times in {mutant.path} "
                         "(must be exactly once; update the mutant to the current code)")
    path.write_text(text.replace(mutant.old, mutant.new))


def environment(dest: Path) -> dict:
    """The copy first on the path (before the editable install of /work/main)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(dest), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def check_imports_copy(dest: Path) -> None:
    """`import gim_ppl` from `dest` must load the copy, never the checkout."""
    out = subprocess.run([sys.executable, "-c", "import gim_ppl; print(gim_ppl.__file__)"],
                         cwd=dest, env=environment(dest), capture_output=True, text=True)
    where = Path(out.stdout.strip()).resolve()
    if out.returncode != 0 or dest.resolve() not in where.parents:
        raise RuntimeError(f"the copy in {dest} is not the gim_ppl imported there: "
                           f"{out.stdout.strip() or out.stderr[-500:]}")


def run_tests(dest: Path, tests) -> tuple[int, str]:
    out = subprocess.run([*PYTEST, *tests], cwd=dest, env=environment(dest),
                         capture_output=True, text=True)
    return out.returncode, out.stdout + out.stderr


def run_mutant(mutant: Mutant) -> tuple[str, float, str]:
    """`(verdict, seconds, pytest's output)`; verdict "caught", "survived" or "error"."""
    with tempfile.TemporaryDirectory(prefix=f"mutant-{mutant.name}-") as tmp:
        dest = Path(tmp)
        copy_tree(dest)
        apply(mutant, dest)
        check_imports_copy(dest)
        start = time.perf_counter()
        code, output = run_tests(dest, mutant.tests)
        seconds = time.perf_counter() - start
    verdict = {0: "survived", 1: "caught"}.get(code, "error")
    return verdict, seconds, output


def run_baseline(mutants) -> tuple[int, float, str]:
    tests = list(dict.fromkeys(t for m in mutants for t in m.tests))
    with tempfile.TemporaryDirectory(prefix="mutant-baseline-") as tmp:
        dest = Path(tmp)
        copy_tree(dest)
        check_imports_copy(dest)
        start = time.perf_counter()
        code, output = run_tests(dest, tests)
    return code, time.perf_counter() - start, output


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="run only this mutant (repeatable)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip running the tests on the unmutated copy first")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="print pytest's output of survivors and errors")
    args = parser.parse_args(argv)
    names = [m.name for m in MUTANTS]
    if len(set(names)) != len(names):
        raise SystemExit("mutant names must be unique")
    mutants = MUTANTS
    if args.only:
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            parser.error(f"unknown mutant(s) {unknown}; --list shows the names")
        mutants = [m for m in MUTANTS if m.name in args.only]
    if args.list:
        for m in mutants:
            print(f"{m.name}\t{m.path}\t{' '.join(m.tests)}")
        return 0
    for m in mutants:  # every snippet still matches the code, before anything runs
        text = (ROOT / m.path).read_text()
        if text.count(m.old) != 1:
            raise SystemExit(f"mutant {m.name}: `old` occurs {text.count(m.old)} times in "
                             f"{m.path}; update it to the current code")
    if not args.no_baseline:
        code, seconds, output = run_baseline(mutants)
        if code != 0:
            print(output[-4000:])
            print(f"baseline: the tests fail on the unmutated copy (exit {code}, "
                  f"{seconds:.0f} s); fix them first")
            return 1
        print(f"baseline: the mutants' tests pass unmutated ({seconds:.0f} s)")
    rows, bad = [], 0
    for m in mutants:
        verdict, seconds, output = run_mutant(m)
        rows.append((m.name, verdict, seconds))
        print(f"{m.name}: {verdict} ({seconds:.1f} s)", flush=True)
        if verdict != "caught":
            bad += 1
            if args.verbose:
                print(output[-3000:])
    print()
    print("| mutant | verdict | seconds |")
    print("|---|---|---|")
    for name, verdict, seconds in rows:
        print(f"| {name} | {verdict} | {seconds:.1f} |")
    print(f"\n{len(rows) - bad}/{len(rows)} caught")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
