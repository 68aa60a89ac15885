"""CSV loader, dataset specs, spec-only preprocessing and the built-in default dataset."""

from __future__ import annotations

import numpy as np
import pytest

from crowdmesh.errors import DecodeError, NotFound, ValidationError
from crowdmesh.fl import (
    BCWD_SPEC,
    HDD_SPEC,
    DatasetSpec,
    Feature,
    data_dir,
    encode,
    encoded_width,
    load_csv,
    load_default,
    load_named,
    parse_csv,
)

TINY = DatasetSpec(
    name="tiny",
    filename="tiny.csv",
    label_column="label",
    label_map={"a": 0, "b": 1},
    features=(Feature("x", 0, 10), Feature("z", 0, 4, categories=(0.0, 1.0, 2.0))),
    drop_columns=("id",),
)
GOOD = "id,x,z,label\n1,2.5,1,a\n2,?,0,b\n\n3,10,2,b\n"


def test_parses_header_missing_values_and_label_map():
    ds = parse_csv(GOOD, TINY)
    assert ds.raw.shape == (3, 2)
    assert np.isnan(ds.raw[1, 0]) and ds.raw[2, 0] == 10.0
    assert ds.y.tolist() == [0, 1, 1]


def test_column_order_comes_from_the_header():
    ds = parse_csv("label,z,id,x\na,2,1,7\n", TINY)
    assert ds.raw.tolist() == [[7.0, 2.0]]


@pytest.mark.parametrize(
    ("text", "code", "line"),
    [
        ("", "bad-csv-empty", 1),
        ("id,x,z,label\n", "bad-csv-empty", 2),
        ("id,x,label\n1,2,a\n", "bad-csv-header", 1),
        ("id,x,z,label,extra\n1,2,1,a,9\n", "bad-csv-header", 1),
        ("id,x,x,label\n", "bad-csv-header", 1),
        ("id,x,z,label\n1,2,1,a\n2,3,1\n", "bad-csv-row", 3),
        ("id,x,z,label\n1,2,1,a\n2,3,1,a,5\n", "bad-csv-row", 3),
        ("id,x,z,label\n1,2,1,a\n\n2,abc,1,b\n", "bad-csv-value", 4),
        ("id,x,z,label\n1,nan,1,a\n", "bad-csv-value", 2),
        ("id,x,z,label\n1,inf,1,a\n", "bad-csv-value", 2),
        ("id,x,z,label\n1,2,1,a\n2,3,1,c\n3,1,1,a\n", "bad-csv-label", 3),
        ("id,x,z,label\n1,2,1,?\n", "bad-csv-label", 2),
        ('id,x,z,label\n1,2,1,a\n2,"3,1,b\n', "bad-csv-row", 3),
    ],
)
def test_malformed_csv_is_rejected_with_its_line_number(text, code, line):
    with pytest.raises(DecodeError) as exc:
        parse_csv(text, TINY)
    assert exc.value.code == code
    assert exc.value.detail.startswith(f"line {line}:")


def test_load_csv_reads_a_path_and_reports_line_numbers(tmp_path):
    path = tmp_path / "tiny.csv"
    path.write_text(GOOD + "4,1,1,a\n5,1,1\n")
    with pytest.raises(DecodeError) as exc:
        load_csv(path, TINY)
    assert exc.value.detail.startswith("line 7:")
    with pytest.raises(NotFound):
        load_csv(tmp_path / "absent.csv", TINY)
    path.write_bytes(b"id,x,z,label\n1,\xff,1,a\n")
    with pytest.raises(DecodeError) as exc:
        load_csv(path, TINY)
    assert exc.value.code == "bad-csv-encoding"


def test_data_dir_follows_the_environment(tmp_path, monkeypatch):
    header = ",".join(f.name for f in HDD_SPEC.features) + ",num\n"
    (tmp_path / "hdd.csv").write_text(header + "50,1,4,130,250,0,0,150,0,1,2,0,3,2\n")
    monkeypatch.setenv("CROWDMESH_DATA_DIR", str(tmp_path))
    assert data_dir() == tmp_path
    ds = load_named("hdd")
    assert ds.y.tolist() == [1]  # num 2 → disease
    with pytest.raises(NotFound):
        load_named("mnist")


def test_bcwd_matches_its_documentation(bcwd):
    assert bcwd.raw.shape == (699, 9)
    assert np.bincount(bcwd.y).tolist() == [458, 241]  # benign 2 → 0, malignant 4 → 1
    assert int(np.isnan(bcwd.raw).sum()) == 16
    assert np.isnan(bcwd.raw[:, 5]).sum() == 16  # all in bare_nuclei


def test_hdd_matches_its_documentation(hdd):
    assert hdd.raw.shape == (303, 13)
    assert np.bincount(hdd.y).tolist() == [164, 139]  # num > 0 → 1
    assert int(np.isnan(hdd.raw).sum()) == 6
    assert hdd.encoded().shape == (303, encoded_width(HDD_SPEC.features))


@pytest.mark.parametrize("spec", [BCWD_SPEC, HDD_SPEC])
def test_preprocessing_needs_only_the_spec(spec, request):
    ds = request.getfixturevalue(spec.name)
    x = ds.encoded()
    assert np.all((x >= 0.0) & (x <= 1.0))
    # A worker holding any subset encodes its rows exactly as the full set encodes them.
    rows = np.arange(0, len(ds.y), 7)
    assert np.array_equal(encode(ds.raw[rows], spec.features), x[rows])


def test_numeric_imputation_scaling_and_one_hot():
    feats = (
        Feature("a", 0, 10),
        Feature("b", 0, 10, fill=2.0),
        Feature("c", 1, 3, categories=(1.0, 3.0)),
    )
    raw = np.array([[np.nan, np.nan, 3.0], [20.0, -5.0, np.nan], [2.5, 5.0, 2.0]])
    assert encode(raw, feats).tolist() == [
        [0.5, 0.2, 0.0, 1.0],  # midpoint fill, declared fill
        [1.0, 0.0, 0.0, 0.0],  # clipped to the declared range; missing category → zeros
        [0.25, 0.5, 0.0, 0.0],  # undeclared category → zeros
    ]
    with pytest.raises(ValidationError):
        encode(raw[:, :2], feats)
    with pytest.raises(ValidationError):
        Feature("bad", 3, 3)


def test_default_dataset_is_built_in():
    ds = load_default()
    assert ds.raw.shape == (569, 30)
    assert np.bincount(ds.y).tolist() == [357, 212]  # malignant → 1
    x = ds.encoded()
    # The declared caps lie above every bundled value, so nothing is clipped away.
    assert np.all((x >= 0.0) & (x < 1.0))


def _on_125_grid(v: float) -> bool:
    exponent = np.floor(np.log10(v))
    return any(np.isclose(v, m * 10.0**exponent) for m in (1, 2, 5))


def test_default_dataset_scaling_uses_no_row_statistic():
    """Bounds are spec constants (0 and a round 1-2-5 cap), not a min or max of any rows, so
    the held-out rows of a split never shape the scaling of the training rows."""
    ds = load_default()
    for j, f in enumerate(ds.features):
        column = ds.raw[:, j]
        assert f.low == 0.0  # every WDBC quantity is non-negative by definition
        assert _on_125_grid(f.high), f
        assert f.high > column.max(), f
        assert f.high not in column and (f.low not in column or f.low == 0.0)
    # mean and worst of a quantity share one cap (worst ≥ mean by definition)
    names = [f.name for f in ds.features]
    for f in ds.features[:10]:
        worst = ds.features[names.index(f.name.replace("mean ", "worst "))]
        assert worst.high == f.high


def test_load_default_equals_sklearn_loader_without_importing_sklearn() -> None:
    """Read straight from the CSV scikit-learn ships: the same rows and (flipped) labels as its
    loader, and no scikit-learn import, so a daemon holding the data exits quickly."""
    import subprocess
    import sys

    from sklearn.datasets import load_breast_cancer

    ds = load_default()
    bunch = load_breast_cancer()
    assert np.array_equal(ds.raw, bunch.data)
    assert np.array_equal(ds.y, 1 - bunch.target)
    assert [f.name for f in ds.features] == [str(n) for n in bunch.feature_names]
    probe = ("import sys; from crowdmesh.fl.datasets import load_default; load_default(); "
             "print('sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "False"
