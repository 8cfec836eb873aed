"""Readers of time-series files: `.npz` (key `series`), `.csv` (wide or long), `.ts` (the UCR/UEA
archive's format, also the sets shipped inside aeon / sktime), and `pad_series`.

Each reader returns a dict of arrays (`series`, `y`, `lengths`, ...) that
`keras_ssl.data.series.from_arrays` turns into a `SeriesData`; see that module for the formats.
"""

from __future__ import annotations

import csv
import importlib.util
import io
from pathlib import Path

import numpy as np

from keras_ssl.errors import KerasSSLError

INSTALL_HINT = "pip install 'keras-ssl[series]'"
_LABEL_COLUMNS = ("label", "y", "class", "target")
_ID_COLUMNS = ("id", "series_id")
_TIME_COLUMNS = ("time", "t", "step", "timestamp")
_ARCHIVE_PACKAGES = ("aeon", "sktime")


def pad_series(series, length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A list of `[T_i]` or `[T_i, F]` arrays -> (float32 `[N, T, F]` zero-padded at the end,
    int32 lengths `[N]`); T is the longest (or `length`: longer ones are cut).

    >>> x, lengths = pad_series([np.ones(3), np.ones(5)])
    >>> x.shape, lengths.tolist(), x[0, :, 0].tolist()
    ((2, 5, 1), [3, 5], [1.0, 1.0, 1.0, 0.0, 0.0])
    """
    arrays = []
    for i, s in enumerate(series):
        s = np.asarray(s, dtype=np.float32)
        if s.ndim == 1:
            s = s[:, None]
        if s.ndim != 2 or len(s) == 0:
            raise KerasSSLError(
                f"series {i} has shape {s.shape}; each series must be [T] or [T, F] with T >= 1."
            )
        arrays.append(s)
    if not arrays:
        raise KerasSSLError("There are no series: the list is empty.")
    channels = {s.shape[1] for s in arrays}
    if len(channels) > 1:
        raise KerasSSLError(
            f"The series have different channel counts {sorted(channels)}; every series needs "
            "the same channels."
        )
    steps = int(length) if length else max(len(s) for s in arrays)
    x = np.zeros((len(arrays), steps, arrays[0].shape[1]), np.float32)
    lengths = np.empty(len(arrays), np.int32)
    for i, s in enumerate(arrays):
        n = min(len(s), steps)
        x[i, :n] = s[:n]
        lengths[i] = n
    return x, lengths


def npz_has_series(path) -> bool:
    """Whether a `.npz` file holds the key `series` (cheap: reads the zip directory only)."""
    try:
        with np.load(path, allow_pickle=False) as loaded:
            return "series" in getattr(loaded, "files", ())
    except Exception:  # noqa: BLE001 - not a readable npz: let the general loader say why
        return False


def read_npz(path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as loaded:
            return {key: loaded[key] for key in loaded.files}
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise KerasSSLError(
                f"{path}: holds a ragged (object) array: series of different lengths without a "
                "mask. Pad them with keras_ssl.data.series.pad_series(list_of_series) and save "
                "np.savez(path, series=x, lengths=lengths, y=y)."
            ) from e
        raise KerasSSLError(f"Could not read {path} as a .npz file ({e}).") from e
    except Exception as e:  # noqa: BLE001
        raise KerasSSLError(f"Could not read {path} as a .npz file ({type(e).__name__}: {e}).") from e


def _number(cell: str) -> float:
    cell = cell.strip()
    if cell in ("", "?", "nan", "NaN", "NA"):
        return np.nan
    return float(cell)


def _is_number(cell: str) -> bool:
    try:
        _number(cell)
        return True
    except ValueError:
        return False


def read_csv(path) -> dict:
    """A `.csv` file (wide or long layout, see the module docstring) -> arrays for from_arrays."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise KerasSSLError(f"Could not read {path}: {e}.") from e
    rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    if not rows:
        raise KerasSSLError(f"{path.name}: the CSV file is empty.")
    header = None
    if not all(_is_number(cell) for cell in rows[0]):
        header = [cell.strip().lower() for cell in rows[0]]
        rows = rows[1:]
    if not rows:
        raise KerasSSLError(f"{path.name}: the CSV file has a header but no rows.")
    if header is not None and any(c in header for c in _ID_COLUMNS):
        return _read_long_csv(path.name, header, rows)
    label_at = None
    if header is not None:
        label_at = next((header.index(c) for c in _LABEL_COLUMNS if c in header), None)
    widths = {len(row) for row in rows}
    if len(widths) > 1:
        counts = sorted(widths)
        raise KerasSSLError(
            f"{path.name}: rows have different numbers of values ({counts[0]} to {counts[-1]}): "
            "give every series the same number of columns, leaving the cells after a shorter "
            "series' end empty (read as padding), or use the long layout (id,time,value columns)."
        )
    labels = None
    if label_at is not None:
        labels = np.array([row[label_at].strip() for row in rows])
        rows = [row[:label_at] + row[label_at + 1:] for row in rows]
        if all(_is_number(v) for v in labels):
            numbers = np.array([float(v) for v in labels])
            labels = numbers.astype(np.int64) if np.all(numbers == np.round(numbers)) else labels
    try:
        x = np.array([[_number(cell) for cell in row] for row in rows], np.float32)
    except ValueError as e:
        raise KerasSSLError(
            f"{path.name}: a cell is not a number ({e}). Wide CSVs hold one series per row; name "
            "the label column 'label'."
        ) from e
    return {"series": x, "y": labels}


def _read_long_csv(name, header, rows) -> dict:
    id_at = next(header.index(c) for c in _ID_COLUMNS if c in header)
    time_at = next((header.index(c) for c in _TIME_COLUMNS if c in header), None)
    label_at = next((header.index(c) for c in _LABEL_COLUMNS if c in header), None)
    value_at = [i for i in range(len(header)) if i not in (id_at, time_at, label_at)]
    if not value_at:
        raise KerasSSLError(f"{name}: the long-format CSV has no value columns besides id/time/label.")
    groups: dict[str, list] = {}
    labels: dict[str, str] = {}
    for number, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise KerasSSLError(
                f"{name}: line {number} has {len(row)} cells, the header {len(header)}."
            )
        key = row[id_at].strip()
        try:
            values = [_number(row[i]) for i in value_at]
            time = _number(row[time_at]) if time_at is not None else len(groups.get(key, []))
        except ValueError as e:
            raise KerasSSLError(f"{name}: line {number}: a value is not a number ({e}).") from e
        groups.setdefault(key, []).append((time, values))
        if label_at is not None:
            label = row[label_at].strip()
            if labels.setdefault(key, label) != label:
                raise KerasSSLError(
                    f"{name}: series {key!r} has more than one label ({labels[key]!r}, {label!r})."
                )
    series = [np.array([v for _, v in sorted(steps, key=lambda s: s[0])], np.float32)
              for steps in groups.values()]
    x, lengths = pad_series(series)
    out = {"series": x, "lengths": lengths}
    if label_at is not None:
        y = np.array([labels[k] for k in groups])
        if all(_is_number(v) for v in y):
            numbers = np.array([float(v) for v in y])
            y = numbers.astype(np.int64) if np.all(numbers == np.round(numbers)) else y
        out["y"] = y
    return out


def read_ts(path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """A `.ts` file (the UCR/UEA archive's format) -> (x `[N, T, F]`, lengths, labels or None)."""
    path = Path(path)
    series, labels, has_labels, in_data, regression = [], [], True, False, False
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                lower = line.lower()
                if lower.startswith("@classlabel"):
                    has_labels = lower.split()[1] == "true"
                elif lower.startswith("@targetlabel"):
                    # A regression target, not a class: read past it, keep no labels.
                    has_labels = regression = lower.split()[1] == "true"
                elif lower.startswith("@data"):
                    in_data = True
                continue
            fields = line.split(":")
            if has_labels:
                labels.append(fields[-1].strip())
                fields = fields[:-1]
            channels = [[_number(v) for v in field.split(",")] for field in fields]
            steps = max(len(c) for c in channels)
            channels = [c + [np.nan] * (steps - len(c)) for c in channels]
            series.append(np.array(channels, np.float32).T)
    if not series:
        raise KerasSSLError(f"{path.name}: no series after @data.")
    x, lengths = pad_series(series)
    # pad_series zero-pads; the NaN check needs trailing NaNs kept as NaN.
    steps = np.arange(x.shape[1])[None]
    x = np.where((steps < lengths[:, None])[:, :, None], x, np.nan).astype(np.float32)
    return x, lengths, (np.array(labels) if has_labels and not regression else None)


def _archive_folders() -> list[Path]:
    folders = []
    for package in _ARCHIVE_PACKAGES:
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.submodule_search_locations:
            continue
        for root in spec.submodule_search_locations:
            folder = Path(root) / "datasets" / "data"
            if folder.is_dir():
                folders.append(folder)
    return folders


def ucr_names() -> list[str]:
    """The UCR/UEA set names shipped in the installed aeon / sktime (empty when neither is)."""
    names = set()
    for folder in _archive_folders():
        for train in folder.glob("*/*_TRAIN.ts"):
            if train.stem == f"{train.parent.name}_TRAIN":
                names.add(train.parent.name)
    return sorted(names)


def ucr_arrays(set_name: str) -> dict:
    """The arrays of the UCR/UEA set `set_name` (its TRAIN and TEST files), for from_arrays."""
    folders = _archive_folders()
    if not folders:
        raise KerasSSLError(
            f"ucr:{set_name} needs the UCR/UEA sets that ship with aeon or sktime, and neither is "
            f"installed: {INSTALL_HINT} (or pip install sktime)."
        )
    available = ucr_names()
    match = next((n for n in available if n.lower() == set_name.lower()), None)
    if match is None:
        raise KerasSSLError(
            f"No UCR/UEA set named {set_name!r} ships with the installed aeon/sktime; offline "
            f"sets: {', '.join(available)}."
        )
    folder = next(f / match for f in folders if (f / match / f"{match}_TRAIN.ts").exists())
    x, lengths, y = read_ts(folder / f"{match}_TRAIN.ts")
    out = {"series": x, "lengths": lengths, "y": y}
    test = folder / f"{match}_TEST.ts"
    if test.exists():
        x_test, lengths_test, y_test = read_ts(test)
        out.update(series_test=x_test, lengths_test=lengths_test, y_test=y_test)
    return out
