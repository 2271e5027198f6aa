"""Drug screens: AnnData → PerturbationData, drug features, doses, splits, and recovery of a
planted ground truth from a toy screen in the sci-Plex3 schema."""

import dataclasses
import warnings

import jax
import numpy as np
import optax
import pandas as pd
import pytest
from scipy import sparse

import gim_ppl
from gim_ppl import PerturbationData
from gim_ppl.core.hill import hill_activation
from gim_ppl.datasets import (
    SCIPLEX3,
    DoseScale,
    center_on_controls,
    dose_response,
    drug_features,
    drug_smiles,
    from_anndata,
    from_anndata_with_info,
    holdout_dose,
    holdout_highest_doses,
    holdout_perturbations,
    sciplex3_splits,
    shift_cells,
    toy_screen,
)
from gim_ppl.evaluation import metrics
from gim_ppl.evaluation.baselines import Observational
from gim_ppl.summary import hill_table, target_table

KEYS = dict(perturbation_key="product_name", dose_key="dose", control="vehicle")


@pytest.fixture(scope="module")
def screen():
    return toy_screen(0)


@pytest.fixture(scope="module")
def features(screen):
    adata, _ = screen
    return drug_features(drug_smiles(adata))


def load(adata, features, **overrides):
    """from_anndata on A549 cells with the planted genes, silencing the normalisation note."""
    kwargs = dict(KEYS, features=features, genes=[f"G{j:02d}" for j in range(12)],
                  cell_type="A549")
    kwargs.update(overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return from_anndata(adata, **kwargs)


# --- the toy screen ------------------------------------------------------------------------


def test_toy_screen_follows_the_sciplex3_schema(screen):
    adata, truth = screen
    assert {SCIPLEX3.perturbation_key, SCIPLEX3.dose_key, SCIPLEX3.cell_type_key,
            SCIPLEX3.smiles_key, SCIPLEX3.control} <= set(adata.obs.columns)
    vehicle = adata.obs["vehicle"].to_numpy()
    assert set(adata.obs["product_name"][vehicle]) == {"Vehicle"}
    assert np.all(adata.obs["dose"][vehicle] == 0)
    assert set(adata.obs["dose"][~vehicle]) == {10.0, 100.0, 1000.0, 10000.0}
    assert set(adata.obs["cell_type"]) == {"A549", "MCF7"}
    x = adata.X.toarray()
    assert sparse.issparse(adata.X) and np.all(x == np.round(x)) and x.min() >= 0
    # every drug has 1 or 2 targets; with 10 drugs and 12 genes every gene is some target
    assert set(truth.targets.sum(1)) <= {1, 2} and truth.targets.any(0).all()
    assert gim_ppl.core.graph.is_dag(truth.adjacency)
    # the SMILES stored per cell are the truth's, one per drug
    assert drug_smiles(adata) == dict(sorted(truth.smiles.items()))


def test_toy_screen_is_deterministic():
    a, ta = toy_screen(3, n_drugs=3, n_genes=4, n_background_genes=5, n_cells=2, n_control=4)
    b, tb = toy_screen(3, n_drugs=3, n_genes=4, n_background_genes=5, n_cells=2, n_control=4)
    np.testing.assert_array_equal(a.X.toarray(), b.X.toarray())
    np.testing.assert_array_equal(ta.weights, tb.weights)


# --- from_anndata ----------------------------------------------------------------------------


def test_from_anndata_builds_contexts_doses_names(screen, features):
    adata, truth = screen
    with pytest.warns(UserWarning, match=r"raw counts .* normalised each cell to 10000 counts "
                                         r"and applied log1p"):
        data = from_anndata(adata, **KEYS, features=features,
                                             genes=list(truth.genes), cell_type="A549")
    a549 = adata.obs["cell_type"].to_numpy() == "A549"
    assert data.n_cells == a549.sum() and data.var_names == truth.genes
    assert data.n_contexts == 1 + 10 * 4
    assert data.context_names[0] == "control" and bool(data.observational[0])
    assert "Dexamethasone@10000nM" in data.context_names
    assert data.perturbation_names == tuple(sorted(truth.drugs))
    assert data.feature_names == tuple(features.columns)
    # doses: nM in the file, µM in the model (1 µM ↦ 1)
    k = data.context_names.index("Imatinib@100nM")
    assert float(data.dose[k]) == pytest.approx(0.1)
    # features of a context are the drug's row of the DataFrame
    np.testing.assert_allclose(np.asarray(data.features[k]), features.loc["Imatinib"],
                               rtol=1e-6)
    # cells: log1p of counts scaled to 10⁴ per cell, computed here independently
    counts = adata.X[np.flatnonzero(a549)].toarray()
    expected = np.log1p(counts / counts.sum(1, keepdims=True) * 1e4)[:, :12]
    np.testing.assert_allclose(np.asarray(data.x), expected, rtol=1e-5, atol=1e-5)
    # each cell sits in the context of its drug and dose
    obs = adata.obs[a549]
    names = np.asarray(data.context_names)[np.asarray(data.context)]
    want = np.where(obs["vehicle"], "control",
                    obs["product_name"].astype(str) + "@" + obs["dose"].map("{:g}".format)
                    + "nM")
    np.testing.assert_array_equal(names, want)


def test_the_bridge_lives_in_datasets_not_in_the_container(screen, features):
    adata, _ = screen
    assert not hasattr(PerturbationData, "from_anndata")
    assert isinstance(load(adata, features), PerturbationData)


def test_from_anndata_never_modifies_the_anndata(screen, features):
    adata, _ = screen
    before_x, before_obs = adata.X.copy(), adata.obs.copy()
    load(adata, features)
    assert (adata.X != before_x).nnz == 0
    pd.testing.assert_frame_equal(adata.obs, before_obs)
    assert "highly_variable" not in adata.var.columns


def test_dense_sparse_layer_and_control_by_name_agree(screen, features):
    adata, _ = screen
    ref = load(adata, features)
    dense = adata.copy()
    dense.X = adata.X.toarray()
    np.testing.assert_allclose(np.asarray(load(dense, features).x), np.asarray(ref.x),
                               rtol=1e-6)
    layered = adata.copy()
    layered.layers["counts"] = adata.X.copy()
    layered.X = sparse.csr_matrix(adata.shape, dtype=np.float32)  # X holds something else
    np.testing.assert_allclose(np.asarray(load(layered, features, layer="counts").x),
                               np.asarray(ref.x), rtol=1e-6)
    by_name = load(adata, features, control="Vehicle")
    np.testing.assert_array_equal(np.asarray(by_name.context), np.asarray(ref.context))
    assert by_name.context_names[0] == "Vehicle"


def test_normalised_input_is_detected_and_used_as_is(screen, features):
    adata, _ = screen
    logged = adata.copy()
    counts = adata.X.toarray()
    logged.X = np.log1p(counts / counts.sum(1, keepdims=True) * 1e4)
    with pytest.warns(UserWarning, match=r"adata.X holds log-normalised values \(the values of "
                                         r"the 2 genes used are non-negative, not whole "
                                         r"numbers, and at most .*\): used as they are"):
        data = from_anndata(logged, **KEYS, features=features, genes=["G03", "G01"],
                            cell_type="A549")
    a549 = np.flatnonzero(adata.obs["cell_type"].to_numpy() == "A549")
    np.testing.assert_allclose(np.asarray(data.x), logged.X[a549][:, [3, 1]], rtol=1e-6)
    assert data.var_names == ("G03", "G01")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an explicit choice is not remarked on
        again = from_anndata(logged, **KEYS, features=features, genes=["G03", "G01"],
                             cell_type="A549", normalize="no")
    np.testing.assert_array_equal(np.asarray(again.x), np.asarray(data.x))


def _expected_log1p(counts, genes):
    """log1p of counts per 10⁴ (library sizes over the finite values of all genes)."""
    totals = np.nansum(counts, axis=1, keepdims=True)
    return np.log1p(counts / totals * 1e4)[:, genes]


def test_non_integer_counts_are_normalised_and_said_so(screen, features):
    """Counts after ambient-RNA correction are not whole numbers, but they are counts."""
    adata, _ = screen
    corrected = adata.copy()
    counts = adata.X.toarray() * 0.93 + 0.01
    corrected.X = counts
    data, info = from_anndata_with_info(corrected, **KEYS, features=features,
                                        genes=["G00", "G05"], cell_type="A549")
    assert info.detected == "non-integer counts" and info.normalized
    assert "reach" in info.evidence and "ambient-RNA" in info.evidence
    a549 = np.flatnonzero(adata.obs["cell_type"].to_numpy() == "A549")
    np.testing.assert_allclose(np.asarray(data.x), _expected_log1p(counts[a549], [0, 5]),
                               rtol=1e-5)
    (note,) = info.notes(cli=True)
    assert note.startswith("adata.X holds non-integer counts") and "--normalize no" in note


def test_nan_outside_the_used_genes_does_not_stop_normalisation(screen, features):
    adata, _ = screen
    holed = adata.copy()
    counts = adata.X.toarray().astype(float)
    counts[[0, 5], 40] = np.nan  # BG028, a gene that is not used
    holed.X = counts
    data, info = from_anndata_with_info(holed, **KEYS, features=features,
                                        genes=["G00", "G01"], cell_type="A549")
    assert info.detected == "raw counts" and info.normalized
    assert info.unused_nonfinite_genes == ("BG028",)
    assert any("BG028" in n and "count as 0" in n for n in info.notes())
    a549 = np.flatnonzero(adata.obs["cell_type"].to_numpy() == "A549")
    np.testing.assert_allclose(np.asarray(data.x), _expected_log1p(counts[a549], [0, 1]),
                               rtol=1e-5)
    # chosen by variability, the gene with NaN is never picked
    data = load(holed, features, genes=None, n_top_genes=20)
    assert "BG028" not in data.var_names and data.n_vars == 20
    # named, it is an error that names the gene and the number of cells
    with pytest.raises(ValueError, match=r"adata.X holds NaN or infinite values in the genes "
                                         r"used: 'BG028' \(2 cells\); leave these genes out"):
        load(holed, features, genes=["G00", "BG028"])


def test_a_panel_with_fewer_genes_than_n_top_genes_uses_all(screen, features):
    adata, _ = screen
    panel = adata[:, :12].copy()  # a 12-gene panel, default n_top_genes=50
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        data = from_anndata(panel, **KEYS, features=features, cell_type="A549")
    notes = [str(w.message) for w in said]
    assert "adata.X has 12 usable genes, fewer than n_top_genes=50: all 12 are used." in notes
    assert any(n.startswith("adata.X holds raw counts") for n in notes)
    assert data.var_names == tuple(f"G{j:02d}" for j in range(12))
    with pytest.raises(ValueError, match="n_top_genes must be at least 1"):
        load(panel, features, genes=None, n_top_genes=0)


def test_normalize_choices(screen, features):
    adata, _ = screen
    yes = load(adata, features, normalize="yes", genes=["G00"])
    assert np.allclose(np.asarray(yes.x), np.asarray(load(adata, features, genes=["G00"]).x))
    raw = load(adata, features, normalize="no", genes=["G00"])
    a549 = np.flatnonzero(adata.obs["cell_type"].to_numpy() == "A549")
    np.testing.assert_array_equal(np.asarray(raw.x)[:, 0], adata.X[a549][:, 0].toarray()[:, 0])
    with pytest.raises(ValueError, match=r"normalize must be 'auto', 'yes' or 'no'"):
        load(adata, features, normalize="maybe")
    scaled = adata.copy()
    counts = adata.X.toarray()
    scaled.X = (counts - counts.mean(0)) / counts.std(0)  # z-scored, as after sc.pp.scale
    _, info = from_anndata_with_info(scaled, **KEYS, features=features, genes=["G00"],
                                     cell_type="A549")
    assert info.detected == "values with negatives" and not info.normalized
    with pytest.raises(ValueError, match="normalize='yes' needs non-negative counts"):
        load(scaled, features, normalize="yes")


def test_empty_anndata_is_named(screen, features):
    adata, _ = screen
    with pytest.raises(ValueError, match=r"adata has no cells \(n_obs = 0\)"):
        load(adata[:0].copy(), features)
    with pytest.raises(ValueError, match=r"adata has no genes \(n_vars = 0\)"):
        load(adata[:, :0].copy(), features)


def test_highly_variable_genes_match_scanpy(screen, features):
    import anndata
    import scanpy as sc

    adata, _ = screen
    data = load(adata, features, genes=None, n_top_genes=15)
    # reference: scanpy on independently normalised A549 cells
    a549 = adata[adata.obs["cell_type"] == "A549"]
    ref = anndata.AnnData(X=a549.X.toarray().astype(float), var=a549.var.copy())
    sc.pp.normalize_total(ref, target_sum=1e4)
    sc.pp.log1p(ref)
    sc.pp.highly_variable_genes(ref, n_top_genes=15, flavor="seurat")
    assert data.var_names == tuple(ref.var_names[ref.var["highly_variable"]])
    assert data.n_vars == 15


def test_pooling_cell_types_warns(screen, features):
    adata, _ = screen
    with pytest.warns(UserWarning, match=r"2 cell types \['A549', 'MCF7'\]"):
        data = from_anndata(adata, **KEYS, features=features,
                                             genes=["G00"], normalize=True)
    assert data.n_cells == adata.n_obs


def test_onehot_features(screen):
    adata, truth = screen
    data = load(adata, "onehot")
    assert data.n_features == 10
    k = data.context_names.index("JQ1@10nM")
    np.testing.assert_array_equal(np.asarray(data.features[k]),
                                  np.eye(10)[sorted(truth.drugs).index("JQ1")])


# --- bad input: each error names what is missing and what is there ---------------------------


@pytest.mark.parametrize("key, value, message", [
    ("perturbation_key", "drug", r"perturbation_key='drug' is not an obs column; obs has "
                                 r"\['product_name', 'dose'"),
    ("dose_key", "dose_nM", r"dose_key='dose_nM' is not an obs column; obs has "
                            r"\['product_name', 'dose'"),
    ("cell_type_key", "cell_line", r"cell_type_key='cell_line' is not an obs column"),
    ("layer", "counts", r"layer='counts' is not in adata.layers; layers: \[\]"),
])
def test_missing_keys(screen, features, key, value, message):
    adata, _ = screen
    with pytest.raises(KeyError, match=message):
        load(adata, features, **{key: value})


def test_control_value_that_does_not_exist(screen, features):
    adata, _ = screen
    with pytest.raises(KeyError, match=r"control='DMSO' is neither an obs column nor a value "
                                       r"of obs\['product_name'\].*'Vehicle'"):
        load(adata, features, control="DMSO")


def test_no_control_cells(screen, features):
    adata, _ = screen
    bad = adata.copy()
    bad.obs["vehicle"] = False
    with pytest.raises(ValueError, match=r"no control cells: control='vehicle' marks none of "
                                         r"the 600 selected cells"):
        load(bad, features)


def test_non_boolean_control_column(screen, features):
    adata, _ = screen
    bad = adata.copy()
    bad.obs["vehicle"] = np.where(adata.obs["vehicle"], "yes", "no")
    with pytest.raises(TypeError, match=r"control='vehicle' names an obs column, which must "
                                        r"be boolean"):
        load(bad, features)


def test_doses_that_are_not_numbers(screen, features):
    adata, _ = screen
    bad = adata.copy()
    bad.obs["dose"] = [f"{c:g} nM" for c in adata.obs["dose"]]
    with pytest.raises(TypeError, match=r"obs\['dose'\] must hold numeric doses; .* not "
                                        r"numbers: \['10 nM', '100 nM'") as err:
        load(bad, features)
    # the error carries its argument, and the CLI names its flag from that, not the prose
    assert err.value.argument == "dose_key"
    from gim_ppl.cli.user_errors import cli_message
    assert cli_message(err.value).startswith("--dose-key: obs['dose'] must hold numeric doses")


def test_missing_and_negative_doses(screen, features):
    adata, _ = screen
    bad = adata.copy()
    dose = adata.obs["dose"].to_numpy().copy()
    first = np.flatnonzero(~adata.obs["vehicle"].to_numpy())[0]
    dose[first] = np.nan
    bad.obs["dose"] = dose
    with pytest.raises(ValueError, match=rf"obs\['dose'\] is missing \(NaN\) for 1 perturbed "
                                         rf"cells \['{adata.obs_names[first]}'\]"):
        load(bad, features)
    dose[first] = -10.0
    bad.obs["dose"] = dose
    with pytest.raises(ValueError, match=r"obs\['dose'\] must be >= 0; negative"):
        load(bad, features)


def test_genes_not_found(screen, features):
    adata, _ = screen
    with pytest.raises(KeyError, match=r"genes not found in adata.var_names: \['TP53', "
                                       r"'MYC'\]; it has 72 genes, e.g. \['G00'"):
        load(adata, features, genes=["G00", "TP53", "MYC"])
    # a typo gets the closest gene, not only the first five
    # (G05 and G50 are equally close to G5O: either is a fair guess)
    with pytest.raises(KeyError, match=r"\['G5O'\]; did you mean 'G(05|50)' for 'G5O'; it "):
        load(adata, features, genes=["G00", "G5O"])
    with pytest.raises(TypeError, match=r"genes must be a list of gene names"):
        load(adata, features, genes="G00")


def test_unknown_cell_type(screen, features):
    adata, _ = screen
    with pytest.raises(ValueError, match=r"cell_type='K562' matches no cell; "
                                         r"obs\['cell_type'\] holds \['A549', 'MCF7'\]"):
        load(adata, features, cell_type="K562")


def test_drug_without_features(screen, features):
    adata, _ = screen
    with pytest.raises(KeyError, match=r"features has no row for the perturbations "
                                       r"\['Tamoxifen'\]; its index holds \['Dexamethasone'"):
        load(adata, features.drop(index="Tamoxifen"))
    with pytest.raises(TypeError, match=r"features must be a pandas DataFrame indexed by "
                                        r"perturbation name"):
        load(adata, features.to_numpy())
    text = features.astype(str)
    with pytest.raises(TypeError, match=r"features must be numeric; non-numeric columns"):
        load(adata, text)


def test_drug_without_smiles(screen):
    adata, _ = screen
    bad = adata.copy()
    smiles = adata.obs["SMILES"].to_numpy().copy()
    smiles[adata.obs["product_name"].to_numpy() == "JQ1"] = ""
    bad.obs["SMILES"] = smiles
    with pytest.raises(ValueError, match=r"obs\['SMILES'\] has no SMILES for the drugs "
                                         r"\['JQ1'\]"):
        drug_smiles(bad)
    with pytest.raises(KeyError, match=r"smiles_key='smiles' is not an obs column"):
        drug_smiles(adata, smiles_key="smiles")


def test_missing_screen_extra_says_how_to_install(monkeypatch, screen, features):
    import sys

    adata, _ = screen
    monkeypatch.setitem(sys.modules, "anndata", None)  # makes `import anndata` fail
    with pytest.raises(ImportError, match=r'pip install "gim_ppl\[screen\]"'):
        load(adata, features)


def test_invalid_smiles_names_the_drug():
    with pytest.raises(ValueError, match=r"invalid SMILES for drug 'brokenine': 'C1CC\(' "):
        drug_features({"aspirin": "CC(=O)Oc1ccccc1C(=O)O", "brokenine": "C1CC("})
    with pytest.raises(ValueError, match=r"drug 'ghost' has no SMILES"):
        drug_features({"aspirin": "CC(=O)Oc1ccccc1C(=O)O", "ghost": None})


# --- drug features -----------------------------------------------------------------------------


def test_morgan_features_match_an_independent_fingerprint_pca(screen):
    from rdkit import Chem, DataStructs, rdBase
    from rdkit.Chem import AllChem

    _, truth = screen
    feats = drug_features(truth.smiles, kind="morgan", n_components=5)
    assert feats.shape == (10, 5) and list(feats.index) == list(truth.smiles)
    # reference: the legacy bit-vector API and a numpy SVD, whitened
    rows = []
    for s in truth.smiles.values():
        with rdBase.BlockLogs():  # the legacy API logs a deprecation note per call
            fp = AllChem.GetMorganFingerprintAsBitVect(Chem.MolFromSmiles(s), 2, nBits=2048)
        arr = np.zeros(2048)
        DataStructs.ConvertToNumpyArray(fp, arr)
        rows.append(arr)
    fps = np.array(rows)
    centred = fps - fps.mean(0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    ref = u[:, :5] * np.sqrt(len(fps) - 1)  # whitened scores: unit variance per component
    got = feats.to_numpy()
    signs = np.sign(np.sum(got * ref, axis=0))
    np.testing.assert_allclose(got, ref * signs, atol=1e-6)


def test_rdkit2d_features_are_standardised_descriptors(screen):
    _, truth = screen
    feats = drug_features(truth.smiles, kind="rdkit2d")
    np.testing.assert_allclose(feats.mean(0), 0.0, atol=1e-9)
    np.testing.assert_allclose(feats.std(0, ddof=0), 1.0, rtol=1e-9)
    # molecular weights from the formulas: doxorubicin 543.5 is the heaviest, 5-FU 130.1 the
    # lightest of the ten
    weight = feats["rdkit2d_MolWt"]
    assert weight.idxmax() == "Doxorubicin" and weight.idxmin() == "Fluorouracil"


def test_feature_pca_components_are_bounded(screen):
    _, truth = screen
    with pytest.raises(ValueError, match=r"n_components must be between 1 and n_drugs − 1 = 9"):
        drug_features(truth.smiles, n_components=10)


# --- doses -------------------------------------------------------------------------------------


@pytest.mark.parametrize("log", [False, True])
def test_dose_scale_maps_ec50_back_to_user_units(log):
    scale = DoseScale.for_unit("nM", log=log)
    assert scale.reference == pytest.approx(1000.0)  # 1 µM ↦ 1
    doses = np.array([0.0, 10.0, 100.0, 1000.0, 10000.0])
    np.testing.assert_allclose(scale.to_user(scale.to_model(doses)), doses, rtol=1e-12)
    assert scale.to_model(0.0) == 0.0
    # half-maximal effect at the user-unit EC50: the model's Hill curve (gim_ppl.core.hill) at
    # to_model(ec50) is exactly 1/2, whatever the transform
    ec50_user, hill = 250.0, 1.7
    act = hill_activation(scale.to_model(ec50_user), np.log(scale.to_model(ec50_user)),
                          np.log(hill))
    assert float(act) == pytest.approx(0.5)
    assert dose_response(scale, [ec50_user], 2.0, ec50_user, hill)[0] == pytest.approx(1.0)
    assert dose_response(scale, [0.0], 2.0, ec50_user, hill)[0] == 0.0


@pytest.mark.parametrize("unit, reference", [
    ("nM", 1e3), ("nanomolar", 1e3), ("Nanomolar", 1e3), ("uM", 1.0), ("µM", 1.0),
    ("μM", 1.0), ("micromolar", 1.0), ("mM", 1e-3), ("millimolar", 1e-3), ("pM", 1e6),
    ("picomolar", 1e6), ("M", 1e-6), ("molar", 1e-6), ("mg/L", 1.0), ("MM", 1.0)])
def test_every_spelling_of_a_molar_unit_gets_the_same_scale(unit, reference):
    """1 µM becomes model dose 1 whatever the spelling (`nanomolar` once got reference 1, a
    silent 1000-fold change); a unit that is not molar keeps its doses (reference 1)."""
    assert DoseScale.for_unit(unit).reference == pytest.approx(reference, rel=1e-12)
    assert DoseScale.for_unit(unit).unit == unit  # reported in the user's own spelling


def test_dose_response_in_user_units_is_the_true_hill_curve(screen):
    _, truth = screen
    scale = DoseScale.for_unit("nM")
    i = truth.drugs.index("Gefitinib")
    doses = np.array([3.0, 10.0, 100.0, 1000.0, 30000.0])
    curve = dose_response(scale, doses, truth.emax[i], truth.ec50[i], truth.hill[i])
    want = np.stack([truth.shift("Gefitinib", c) for c in doses])
    t = truth.targets[i]
    np.testing.assert_allclose(curve[:, t], want[:, t], rtol=1e-10)


def test_units_other_than_molar(screen, features):
    adata, _ = screen
    assert DoseScale.for_unit("mg/ml").reference == 1.0
    assert DoseScale.for_unit("uM").reference == pytest.approx(1.0)
    data = load(adata, features, dose_unit="µM", genes=["G00"])
    k = data.context_names.index("JQ1@100µM")  # the file's numbers, now read as µM
    assert float(data.dose[k]) == pytest.approx(100.0)
    with pytest.raises(ValueError, match=r"DoseScale\.reference must be a finite number > 0"):
        DoseScale("nM", reference=0.0)


# --- splits ------------------------------------------------------------------------------------


def test_sciplex3_splits_hold_out_each_drugs_highest_dose(screen, features):
    adata, truth = screen
    data = load(adata, features)
    pairs = list(sciplex3_splits(data))
    assert len(pairs) == len(truth.drugs)
    seen = []
    for train, test in pairs:
        assert test.n_contexts == 1 and train.n_contexts == data.n_contexts - 1
        (name,) = test.context_names
        assert name.endswith("@10000nM")
        assert name not in train.context_names and "control" in train.context_names
        assert train.n_cells + test.n_cells == data.n_cells
        seen.append(name.split("@")[0])
    assert seen == sorted(truth.drugs)


def test_holdout_dose_perturbations_and_highest_doses(screen, features):
    adata, _ = screen
    data = load(adata, features)
    assert data.dose_scale == DoseScale.for_unit("nM")
    # the dose in the file's unit (nM), as the data carries its scale
    train, test = holdout_dose(data, "JQ1", 10000.0)
    assert test.context_names == ("JQ1@10000nM",) and train.n_contexts == data.n_contexts - 1
    assert train.dose_scale == test.dose_scale == data.dose_scale
    # the same context by its model dose (1 µM ↦ 1), or through an explicit scale
    assert holdout_dose(data, "JQ1", 10.0, dose_scale=DoseScale.model_units())[1] \
        .context_names == ("JQ1@10000nM",)
    assert holdout_dose(data, "JQ1", 10.0, dose_scale=DoseScale.for_unit("µM"))[1] \
        .context_names == ("JQ1@10000nM",)
    train, test = holdout_perturbations(data, ["JQ1", "Tamoxifen"])
    assert sorted({n.split("@")[0] for n in test.context_names}) == ["JQ1", "Tamoxifen"]
    assert not any(n.startswith(("JQ1@", "Tamoxifen@")) for n in train.context_names)
    train, test = holdout_highest_doses(data)
    assert test.n_contexts == 10 and all(n.endswith("@10000nM") for n in test.context_names)
    with pytest.raises(ValueError, match=r"'JQ1' has no context at dose 50.0 nM; its doses: "
                                         r"\[10.0, 100.0, 1000.0, 10000.0\] nM"):
        holdout_dose(data, "JQ1", 50.0)
    with pytest.raises(KeyError, match=r"perturbation 'Aspirin' is not in the data"):
        holdout_perturbations(data, ["Aspirin"])


def test_centring_round_trip(screen, features):
    adata, _ = screen
    data = load(adata, features)
    centred, offset = center_on_controls(data)
    x = np.asarray(centred.x)
    np.testing.assert_allclose(x[np.asarray(data.context) == 0].mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(shift_cells(centred, offset).x), np.asarray(data.x),
                               atol=1e-5)


# --- recovery of the planted truth ---------------------------------------------------------------


def test_recovers_planted_targets_and_predicts_the_held_out_highest_dose(screen, features):
    """from_anndata → fit → predict the held-out 10 µM of every drug (one fit)."""
    adata, truth = screen
    data = load(adata, features)
    train, test = holdout_highest_doses(data)
    centred, offset = center_on_controls(train)
    model = gim_ppl.GIM(data.n_vars, data.n_features)
    res = gim_ppl.fit(model, centred, steps=6000, key=jax.random.key(0),
                      optimizer=optax.adam(1e-2), progress=False)
    assert res.message == ""

    # targets of the held-out contexts, from the drugs' features (test cells unused)
    pi = model.target_probabilities(res.sites, test)
    drugs = [test.perturbation_names[p] for p in np.asarray(test.perturbation)]
    planted = np.stack([truth.targets[truth.drugs.index(d)] for d in drugs])
    auroc = metrics.auroc(planted, pi)
    # the same numbers through the public table
    table = target_table(model, res.sites, data, train=centred)
    by_table = table.pivot(index="perturbation", columns="gene",
                           values="target_probability").loc[drugs, list(truth.genes)]
    np.testing.assert_allclose(by_table.to_numpy(), pi, rtol=1e-6)

    pred = shift_cells(model.predict(res.sites, test.contexts_only(), key=jax.random.key(1),
                                     n_cells=400), offset)
    control = Observational().fit(train).predict(test.contexts_only(), key=jax.random.key(2),
                                                 n_cells=400)
    err = metrics.mean_error(pred, test, per_context=True)
    err_control = metrics.mean_error(control, test, per_context=True)
    print(f"target AUROC {auroc:.3f}; held-out mean error {err.mean():.3f} vs control "
          f"{err_control.mean():.3f}")
    assert auroc >= 0.9
    assert err.mean() < err_control.mean()

    # EC50 in nM: the fitted curve of each true target, evaluated in user units at the
    # training dose 1 µM, has the sign of the planted one
    hill = hill_table(model, res.sites, data)  # EC50 in the data's unit, nM
    assert set(hill["dose_unit"]) == {"nM"}
    pd.testing.assert_frame_equal(hill_table(model, res.sites, data, DoseScale.for_unit("nM")),
                                  hill)
    # two identical draws report the same table as the point they repeat
    draws = {k: np.stack([np.asarray(v)] * 2) for k, v in res.sites.items()}
    with_draws = hill_table(model, draws, data)  # + the (zero-width) interval of π
    pd.testing.assert_frame_equal(
        with_draws.drop(columns=["target_probability_low", "target_probability_high"]), hill,
        rtol=1e-5)
    signs = []
    for d, row in zip(drugs, planted, strict=True):
        mine = hill[hill["perturbation"] == d].set_index("gene").loc[list(truth.genes)]
        fitted = dose_response(DoseScale.for_unit("nM"), [1000.0], mine["emax"].to_numpy(),
                               mine["ec50"].to_numpy(), mine["hill"].to_numpy())[0]
        signs.append(np.sign(fitted[row]) == np.sign(truth.shift(d, 1000.0)[row]))
    assert np.mean(np.concatenate(signs)) >= 0.9


def test_schema_can_be_remapped(screen, features):
    adata, _ = screen
    renamed = adata.copy()
    renamed.obs = adata.obs.rename(columns={"product_name": "perturbation",
                                            "dose": "dose_value", "cell_type": "cell_line"})
    renamed.obs["perturbation"] = renamed.obs["perturbation"].cat.rename_categories(
        {"Vehicle": "control"})
    schema = dataclasses.replace(SCIPLEX3, perturbation_key="perturbation",
                                 dose_key="dose_value", cell_type_key="cell_line",
                                 control="control")
    kwargs = schema.from_anndata_kwargs()
    data = load(renamed, features, **kwargs)
    ref = load(adata, features)
    np.testing.assert_allclose(np.asarray(data.x), np.asarray(ref.x))
    assert data.context_names[1:] == ref.context_names[1:]
