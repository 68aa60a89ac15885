"""Dataset specs and loaders: CSV files (BCWD, HDD) and the built-in scikit-learn default.

Invariants:
- This is the only module of ``crowdmesh.fl`` that touches files. Loaders take a path (or the
  data directory from ``CROWDMESH_DATA_DIR``, else ``../shared/data`` next to the repository);
  nothing is copied into the repository.
- CSV format: line 1 is a header naming every column; every later non-blank line has exactly
  as many comma-separated fields; ``?`` (the spec's ``missing`` marker) or an empty field is a
  missing value (→ NaN, imputed later by :mod:`crowdmesh.fl.features`); every other feature
  value is a decimal number; the label must be a key of the spec's ``label_map``.
- Malformed input raises ``DecodeError`` whose detail starts with ``line N:`` (1-based, the
  header is line 1); codes: ``bad-csv-header``, ``bad-csv-row``, ``bad-csv-value``,
  ``bad-csv-label``, ``bad-csv-empty``.
- Feature declarations (ranges, fills, categories) are documentation constants, not statistics
  of the file, so preprocessing needs nothing but the spec.
"""

from __future__ import annotations

import csv
import importlib.util
import math
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from crowdmesh.errors import DecodeError, NotFound
from crowdmesh.fl.features import Feature, encode

__all__ = [
    "BCWD_SPEC",
    "HDD_SPEC",
    "WDBC_FEATURES",
    "Dataset",
    "DatasetSpec",
    "data_dir",
    "load_csv",
    "load_default",
    "load_named",
    "parse_csv",
]

_MAX_FIELD = 64  # a numeric field longer than this is garbage, not a number
# Plain decimals only: float() would also accept "nan", "inf" and "1_0", which are not data.
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


@dataclass(frozen=True, slots=True)
class DatasetSpec:
    """How to read one CSV: which columns are features (in order), the label and its mapping."""

    name: str
    filename: str
    label_column: str
    label_map: Mapping[str, int]
    features: tuple[Feature, ...]
    drop_columns: tuple[str, ...] = ()
    missing: str = "?"


@dataclass(frozen=True, slots=True, eq=False)
class Dataset:
    """Raw feature rows (NaN = missing) in feature order, integer labels, and the declarations."""

    name: str
    raw: NDArray[np.float64]
    y: NDArray[np.int64]
    features: tuple[Feature, ...]

    def encoded(self) -> NDArray[np.float64]:
        """Model inputs: imputed and range-scaled per the feature declarations."""
        return encode(self.raw, self.features)


def _range(name: str, low: float, high: float) -> Feature:
    return Feature(name, float(low), float(high))


def _categorical(name: str, cats: tuple[float, ...]) -> Feature:
    return Feature(name, min(cats), max(cats), categories=cats)


# UCI Breast Cancer Wisconsin (Original): nine cytology scores, each documented as 1–10.
_BCWD_FEATURES = tuple(
    _range(n, 1, 10)
    for n in (
        "clump_thickness", "uniformity_of_cell_size", "uniformity_of_cell_shape",
        "marginal_adhesion", "single_epithelial_cell_size", "bare_nuclei",
        "bland_chromatin", "normal_nucleoli", "mitoses",
    )
)
BCWD_SPEC = DatasetSpec(
    name="bcwd",
    filename="bcwd.csv",
    label_column="class",
    label_map={"2": 0, "4": 1},  # benign → 0, malignant → 1
    features=_BCWD_FEATURES,
    drop_columns=("sample_code_number",),
)

# UCI Heart Disease (Cleveland): ranges are clinical plausibility bounds chosen from the
# attribute documentation (heart-disease.names), not from the file; nominal attributes are
# one-hot over their documented codes.
_HDD_FEATURES = (
    _range("age", 20, 80),
    _categorical("sex", (0.0, 1.0)),
    _categorical("cp", (1.0, 2.0, 3.0, 4.0)),
    _range("trestbps", 90, 200),
    _range("chol", 100, 600),
    _categorical("fbs", (0.0, 1.0)),
    _categorical("restecg", (0.0, 1.0, 2.0)),
    _range("thalach", 60, 210),
    _categorical("exang", (0.0, 1.0)),
    _range("oldpeak", 0, 6.5),
    _categorical("slope", (1.0, 2.0, 3.0)),
    _range("ca", 0, 3),
    _categorical("thal", (3.0, 6.0, 7.0)),
)
HDD_SPEC = DatasetSpec(
    name="hdd",
    filename="hdd.csv",
    label_column="num",
    label_map={"0": 0, "1": 1, "2": 1, "3": 1, "4": 1},  # num > 0 → disease
    features=_HDD_FEATURES,
)

_NAMED = {spec.name: spec for spec in (BCWD_SPEC, HDD_SPEC)}


def data_dir() -> Path:
    """``$CROWDMESH_DATA_DIR`` if set, else ``../shared/data`` relative to the repository root."""
    env = os.environ.get("CROWDMESH_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _fail(code: str, line: int, detail: str) -> DecodeError:
    return DecodeError(code, f"line {line}: {detail}")


def _header_index(header: list[str], spec: DatasetSpec) -> tuple[list[int], int]:
    names = [h.strip() for h in header]
    if len(set(names)) != len(names):
        raise _fail("bad-csv-header", 1, "duplicate column names")
    wanted = [f.name for f in spec.features] + [spec.label_column]
    missing = [w for w in wanted if w not in names]
    if missing:
        raise _fail("bad-csv-header", 1, f"missing columns {missing}")
    known = set(wanted) | set(spec.drop_columns)
    extra = [n for n in names if n not in known]
    if extra:
        raise _fail("bad-csv-header", 1, f"undeclared columns {extra}")
    return [names.index(f.name) for f in spec.features], names.index(spec.label_column)


def _number(text: str, line: int, column: str, missing: str) -> float:
    value = text.strip()
    if value in (missing, ""):
        return math.nan
    if len(value) > _MAX_FIELD or not _NUMBER.fullmatch(value):
        shown = value[:_MAX_FIELD]
        raise _fail("bad-csv-value", line, f"column {column!r}: {shown!r} is not a number")
    return float(value)


def _rows(lines: Iterator[str]) -> Iterator[tuple[int, list[str]]]:
    reader = csv.reader(lines, strict=True)
    try:
        for row in reader:
            if row:  # blank lines are not rows
                yield reader.line_num, row
    except csv.Error as exc:
        raise _fail("bad-csv-row", reader.line_num, str(exc)) from None


def parse_csv(text: str, spec: DatasetSpec) -> Dataset:
    """Parse CSV text per ``spec`` (see the module docstring for the format and errors)."""
    rows = _rows(iter(text.splitlines()))
    first = next(rows, None)
    if first is None:
        raise _fail("bad-csv-empty", 1, "no header row")
    feat_idx, label_idx = _header_index(first[1], spec)
    width = len(first[1])
    raw: list[list[float]] = []
    labels: list[int] = []
    for line, row in rows:
        if len(row) != width:
            raise _fail("bad-csv-row", line, f"expected {width} fields, got {len(row)}")
        label = row[label_idx].strip()
        if label not in spec.label_map:
            raise _fail("bad-csv-label", line, f"label {label[:_MAX_FIELD]!r} not in the label map")
        raw.append([_number(row[i], line, spec.features[j].name, spec.missing)
                    for j, i in enumerate(feat_idx)])
        labels.append(spec.label_map[label])
    if not raw:
        raise _fail("bad-csv-empty", 2, "no data rows")
    return Dataset(spec.name, np.asarray(raw, dtype=np.float64),
                   np.asarray(labels, dtype=np.int64), spec.features)


def load_csv(path: str | os.PathLike[str], spec: DatasetSpec) -> Dataset:
    """Read and parse one CSV file.

    Raises:
        NotFound: ``dataset-not-found`` if the file does not exist.
        DecodeError: malformed content, with the line number (see the module docstring).
    """
    p = Path(path)
    if not p.is_file():
        raise NotFound("dataset-not-found", str(p))
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError("bad-csv-encoding", f"{p}: not UTF-8 ({exc.reason})") from None
    return parse_csv(text, spec)


def load_named(name: str, directory: str | os.PathLike[str] | None = None) -> Dataset:
    """Load ``bcwd`` or ``hdd`` from ``directory`` (default :func:`data_dir`)."""
    spec = _NAMED.get(name)
    if spec is None:
        raise NotFound("dataset-not-found", f"unknown dataset {name!r}; known: {sorted(_NAMED)}")
    return load_csv(Path(directory or data_dir()) / spec.filename, spec)


# scikit-learn's bundled WDBC (Breast Cancer Wisconsin, Diagnostic): ten nucleus quantities, each
# as mean, standard error and "worst" (mean of the three largest). Bounds are constants of this
# spec, never computed from rows: low = 0 because every quantity is a non-negative size, grey
# level spread, ratio or dimension by definition; high = a round cap on the 1-2-5 grid, one cap
# for mean and worst (worst ≥ mean by definition) and one for the standard error. The caps were
# written once, rounded out to that grid from the whole-dataset ranges printed in the dataset's
# own description, so the pooled data shows through only as which grid step its maximum falls
# in; they follow no split and leave every bundled value strictly inside the range.
_WDBC_CAPS: dict[str, tuple[float, float]] = {  # quantity: (mean/worst cap, standard-error cap)
    "radius": (50, 5),
    "texture": (50, 5),
    "perimeter": (500, 50),
    "area": (5000, 1000),
    "smoothness": (0.5, 0.05),
    "compactness": (2, 0.2),
    "concavity": (2, 0.5),
    "concave points": (0.5, 0.1),
    "symmetry": (1, 0.1),
    "fractal dimension": (0.5, 0.05),
}
WDBC_FEATURES = tuple(
    [_range(f"mean {q}", 0, cap) for q, (cap, _) in _WDBC_CAPS.items()]
    + [_range(f"{q} error", 0, cap) for q, (_, cap) in _WDBC_CAPS.items()]
    + [_range(f"worst {q}", 0, cap) for q, (cap, _) in _WDBC_CAPS.items()]
)


def _sklearn_wdbc_csv() -> Path:
    # why not ``import sklearn``: it loads ~150 extension modules, and a daemon that did so took
    # seconds longer to exit under load; find_spec locates the package without running it
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise DecodeError("bad-dataset", "scikit-learn (the built-in dataset) is not installed")
    return Path(spec.origin).parent / "datasets" / "data" / "breast_cancer.csv"


def load_default() -> Dataset:
    """scikit-learn's bundled Breast Cancer Wisconsin (Diagnostic) data: 569 rows, 30 features.

    Read from the CSV file scikit-learn ships (header ``569,30,malignant,benign``; columns in
    the order of :data:`WDBC_FEATURES`; last column 0 = malignant), without importing it.
    Labels: malignant → 1, benign → 0 (scikit-learn uses the reverse). Features are scaled by
    :data:`WDBC_FEATURES`: fixed spec constants (0 to a round cap), not statistics of the rows,
    so no held-out row shapes the scaling. Raises ``DecodeError('bad-dataset-features')`` if the
    installed file has another shape.
    """
    lines = _sklearn_wdbc_csv().read_text(encoding="ascii").splitlines()
    if not lines or lines[0].split(",")[:2] != ["569", "30"]:
        raise DecodeError("bad-dataset-features", "unexpected breast_cancer.csv header")
    table = np.array([[float(v) for v in line.split(",")] for line in lines[1:] if line],
                     dtype=np.float64)
    if table.shape != (569, len(WDBC_FEATURES) + 1):
        raise DecodeError("bad-dataset-features", f"unexpected shape {table.shape}")
    y = (1 - table[:, -1]).astype(np.int64)
    return Dataset("breast_cancer_sklearn", table[:, :-1], y, WDBC_FEATURES)
