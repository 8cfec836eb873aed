"""Time series sources -> float32 `[N, T, F]` arrays (T steps of F channels) in a `SeriesData`.

`load(source)` is the one entry point for series (`keras_ssl.data.load` hands series sources to it).

Accepted sources:

- a `.npz` file with the key `series` (`[N, T]` or `[N, T, F]`), and optionally `y`,
  `series_test`, `y_test`, `lengths`, `lengths_test`. A rank-3 array alone would be ambiguous with
  grayscale images, so series say so by their key.
- a `.csv` file, in one of two layouts, told apart by the header:
  - wide: one series per row, one column per step (one channel). A column named `label` (or `y`,
    `class`, `target`) holds the class. A header row is optional.
  - long: a header with an id column (`id` or `series_id`), a time column (`time`, `t`, `step`
    or `timestamp`), one column per channel and optionally a label column; rows are sorted by
    time within each id.
- `"ucr:<Name>"` (or `"uea:<Name>"`): a UCR/UEA archive set shipped inside the `aeon` or `sktime`
  package (offline; `pip install 'keras-ssl[series]'`): GunPoint, ItalyPowerDemand, ArrowHead,
  OSULeaf, ACSF1, BasicMotions, JapaneseVowels, ... with the archive's own train/test split.
  A path to a `.ts` file of that format works too.
- NumPy arrays from Python: `load(x)`, `load((x, y))`, `load({"series": x, "y": y, ...})`.

Variable-length series are padded with zeros at the end to the longest one, and their true lengths
kept in `SeriesData.lengths_train` / `lengths_test` (int32 `[N]`; `mask_train()` gives the boolean
mask `[N, T]`). Where series come padded already (`.npz`), give `lengths`; a ragged (object) array
is refused: pad it with `pad_series(list_of_arrays)`, which returns `(x, lengths)`.

Conversions, and the errors instead of them:

- steps that are NaN in every channel at the end of a series are padding (the UCR archive pads
  that way); a NaN inside a series is an error unless `fill_nan="interpolate"` (linear, per
  channel) or `"zero"` is passed.
- a wide CSV whose rows have different numbers of values is an error: leave the cells after a
  shorter series' end empty (read as padding) or use the long layout.
- `length=T` resamples every series (its valid part) to T steps by linear interpolation.

>>> import numpy as np
>>> from keras_ssl.data import series
>>> d = series.load({"series": np.zeros((10, 30, 2), "float32"), "y": np.arange(10) % 2})
>>> d.kind, d.x_train.shape, d.x_test.shape, d.input_shape
('series', (8, 30, 2), (2, 30, 2), (30, 2))
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from keras_ssl.data.base import SSLData
from keras_ssl.data.convert import canonical_labels, split_indices, subset
from keras_ssl.data.series_files import (
    INSTALL_HINT,
    npz_has_series,
    pad_series,
    read_csv,
    read_npz,
    read_ts,
    ucr_arrays,
    ucr_names,
)
from keras_ssl.errors import KerasSSLError

__all__ = ["INSTALL_HINT", "SeriesData", "is_series_source", "load", "pad_series", "ucr_names"]

SERIES_SOURCES_HELP = (
    "Accepted series sources: a .npz file with 'series' (and optional y, series_test, y_test, "
    "lengths); a .csv file (one series per row, or long format with id and time columns); "
    "'ucr:<Name>' for a UCR/UEA set shipped in aeon or sktime; a .ts file; NumPy arrays."
)
FILL_NAN = (None, "interpolate", "zero")


@dataclasses.dataclass(repr=False)
class SeriesData(SSLData):
    """Training and held-out time series, float32 `[N, T, F]`, zero-padded at the end.

    An `SSLData` of kind "series": `train_dataset(batch_size)`, `test_dataset()`, `input_shape`
    (`(T, F)`) work as for images and vectors.

    Attributes (besides SSLData's):
        lengths_train: int32 `[N]`, the number of valid steps of each training series.
        lengths_test: int32 `[N_test]` for the held-out series, or None without them.
    """

    lengths_train: np.ndarray | None = dataclasses.field(default=None, kw_only=True)
    lengths_test: np.ndarray | None = dataclasses.field(default=None, kw_only=True)
    kind: str = "series"

    def __post_init__(self):
        super().__post_init__()
        steps = self.x_train.shape[1]
        for x, field in ((self.x_train, "lengths_train"), (self.x_test, "lengths_test")):
            lengths = getattr(self, field)
            if x is None:
                continue
            if lengths is None:
                lengths = np.full(len(x), steps, np.int32)
            lengths = np.asarray(lengths).astype(np.int32).reshape(-1)
            if len(lengths) != len(x) or lengths.min(initial=1) < 1 or lengths.max(initial=1) > steps:
                raise KerasSSLError(
                    f"{self.name}: {field} must hold one length in 1..{steps} per series."
                )
            setattr(self, field, lengths)

    @property
    def num_steps(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def num_channels(self) -> int:
        return int(self.x_train.shape[2])

    def mask_train(self) -> np.ndarray:
        """bool `[N, T]`: True at the valid steps of each training series."""
        return np.arange(self.num_steps)[None] < self.lengths_train[:, None]

    def mask_test(self) -> np.ndarray | None:
        if self.x_test is None:
            return None
        return np.arange(self.num_steps)[None] < self.lengths_test[:, None]

    def __repr__(self) -> str:
        held_out = "None" if self.x_test is None else len(self.x_test)
        return (
            f"SeriesData(name={self.name!r}, train={len(self.x_train)}, held_out={held_out}, "
            f"steps={self.num_steps}, channels={self.num_channels}, "
            f"num_classes={self.num_classes})"
        )


# ----- conversion -------------------------------------------------------------------------------
def _as_series_array(x, what: str, name: str) -> np.ndarray:
    """float `[N, T, F]` from `[N, T]` or `[N, T, F]`; ragged and non-numeric input refused."""
    if isinstance(x, (list, tuple)) and x and len({np.shape(s) for s in x}) > 1:
        raise KerasSSLError(
            f"{name}: {what} holds series of different lengths (ragged) and no mask. Pad them "
            "with keras_ssl.data.series.pad_series(list_of_series), which returns (x, lengths), "
            "and pass lengths too."
        )
    x = np.asarray(x)
    if x.dtype == object:
        raise KerasSSLError(
            f"{name}: {what} is a ragged (object) array: series of different lengths without a "
            "mask. Pad them with keras_ssl.data.series.pad_series(list_of_series), which returns "
            "(x, lengths), and store both (np.savez(path, series=x, lengths=lengths, y=y))."
        )
    if x.dtype.kind not in "biuf":
        raise KerasSSLError(f"{name}: {what} has dtype {x.dtype}; series must be numbers.")
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3:
        raise KerasSSLError(
            f"{name}: {what} has shape {x.shape}; series must be [N, T] (one channel) or "
            "[N, T, F] (T steps of F channels)."
        )
    if x.shape[0] == 0 or x.shape[1] == 0 or x.shape[2] == 0:
        raise KerasSSLError(f"{name}: {what} has shape {x.shape}: no series, steps or channels.")
    return x.astype(np.float32)


def _clean_nan(x, lengths, fill_nan, what, name):
    """Trailing all-NaN steps become padding (lengths shrink); other NaNs per `fill_nan`."""
    if fill_nan not in FILL_NAN:
        raise KerasSSLError(f"fill_nan must be None, 'interpolate' or 'zero', got {fill_nan!r}.")
    steps = x.shape[1]
    finite = np.isfinite(x)
    if np.isinf(x).any():
        n, t, _ = np.argwhere(np.isinf(x))[0]
        raise KerasSSLError(f"{name}: {what} series {n} is infinite at step {t}; fix the data.")
    valid_step = finite.any(axis=2)  # [N, T]
    last_valid = np.where(valid_step.any(axis=1),
                          steps - np.argmax(valid_step[:, ::-1], axis=1), 0)
    if (last_valid == 0).any():
        raise KerasSSLError(
            f"{name}: {what} series {int(np.argmin(last_valid))} is all NaN; drop it."
        )
    lengths = np.minimum(lengths, last_valid).astype(np.int32)
    inside = np.arange(steps)[None] < lengths[:, None]
    holes = ~finite & inside[:, :, None]
    if holes.any():
        n, t, c = (int(v) for v in np.argwhere(holes)[0])
        if fill_nan is None:
            raise KerasSSLError(
                f"{name}: {what} series {n} has a NaN at step {t} (channel {c}) before its end. "
                "Fill the gaps (e.g. interpolate them), or pass fill_nan='interpolate' (linear, "
                "per channel) or fill_nan='zero'."
            )
        if fill_nan == "zero":
            x = np.where(holes, 0.0, x)
        else:
            x = x.copy()
            for n, c in {(int(a), int(b)) for a, _, b in np.argwhere(holes)}:
                valid = slice(0, lengths[n])
                values = x[n, valid, c]
                ok = np.isfinite(values)
                if not ok.any():
                    values[:] = 0.0
                else:
                    steps_n = np.arange(len(values))
                    values[~ok] = np.interp(steps_n[~ok], steps_n[ok], values[ok])
                x[n, valid, c] = values
    # Padding is zeros, whatever it was stored as.
    x = np.where(inside[:, :, None], x, 0.0).astype(np.float32)
    return x, lengths


def _resample(x, lengths, length):
    """Each series' valid part linearly resampled to `length` steps."""
    out = np.empty((len(x), length, x.shape[2]), np.float32)
    target = np.linspace(0.0, 1.0, length)
    for i, n in enumerate(lengths):
        source = np.linspace(0.0, 1.0, int(n)) if n > 1 else np.zeros(1)
        for c in range(x.shape[2]):
            out[i, :, c] = np.interp(target, source, x[i, : int(n), c]) if n > 1 else x[i, 0, c]
    return out, np.full(len(x), length, np.int32)


def _check_lengths(lengths, x, what, name):
    if lengths is None:
        return np.full(len(x), x.shape[1], np.int32)
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or len(lengths) != len(x) or lengths.dtype.kind not in "iu":
        raise KerasSSLError(
            f"{name}: {what} must be one integer length per series ({len(x)}), got shape "
            f"{lengths.shape} and dtype {lengths.dtype}."
        )
    if len(lengths) and (lengths.min() < 1 or lengths.max() > x.shape[1]):
        raise KerasSSLError(
            f"{name}: {what} must lie in 1..{x.shape[1]} (the padded length), got "
            f"{int(lengths.min())}..{int(lengths.max())}."
        )
    return lengths.astype(np.int32)


def from_arrays(arrays: Mapping, *, name: str = "arrays", test_fraction: float = 0.2,
                seed: int = 0, max_examples: int | None = None, fill_nan: str | None = None,
                length: int | None = None) -> SeriesData:
    """A dict like a `.npz` (`series`, `y`, `series_test`, `y_test`, `lengths`, `lengths_test`)
    -> `SeriesData`, holding out `test_fraction` of labelled series when there is no test split."""
    keys = sorted(arrays)
    x = arrays.get("series", arrays.get("x"))
    if x is None:
        raise KerasSSLError(
            f"{name}: no series under the key 'series' (found keys: {keys or 'none'}). Save them "
            "as np.savez(path, series=x, y=labels)."
        )
    x = _as_series_array(x, "series", name)
    lengths = _check_lengths(arrays.get("lengths"), x, "lengths", name)
    x, lengths = _clean_nan(x, lengths, fill_nan, "series", name)
    x_test = arrays.get("series_test", arrays.get("x_test"))
    lengths_test = None
    if x_test is not None:
        x_test = _as_series_array(x_test, "series_test", name)
        lengths_test = _check_lengths(arrays.get("lengths_test"), x_test, "lengths_test", name)
        x_test, lengths_test = _clean_nan(x_test, lengths_test, fill_nan, "series_test", name)
        if x_test.shape[2] != x.shape[2]:
            raise KerasSSLError(
                f"{name}: series have {x.shape[2]} channel(s) but series_test {x_test.shape[2]}; "
                "they must match."
            )
        if x_test.shape[1] != x.shape[1] and length is None:
            # Pad the shorter split: lengths say where each series ends.
            steps = max(x.shape[1], x_test.shape[1])
            x = np.pad(x, ((0, 0), (0, steps - x.shape[1]), (0, 0)))
            x_test = np.pad(x_test, ((0, 0), (0, steps - x_test.shape[1]), (0, 0)))
    elif arrays.get("y_test") is not None:
        raise KerasSSLError(f"{name}: y_test is given without series_test.")
    y, y_test, class_names = canonical_labels(
        arrays.get("y"), arrays.get("y_test"), len(x),
        None if x_test is None else len(x_test), name,
    )
    if length is not None:
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 2:
            raise KerasSSLError(f"length must be an integer of at least 2, got {length!r}.")
        x, lengths = _resample(x, lengths, int(length))
        if x_test is not None:
            x_test, lengths_test = _resample(x_test, lengths_test, int(length))
    if x_test is None:
        train, test = split_indices(len(x), y, test_fraction, seed, max_examples, name)
        if test is not None:
            x_test, lengths_test = x[test], lengths[test]
            y_test = None if y is None else y[test]
        x, lengths, y = x[train], lengths[train], (None if y is None else y[train])
    elif max_examples is not None and len(x) > max_examples:
        train = subset(np.arange(len(x)), y, max_examples, seed)
        x, lengths, y = x[train], lengths[train], (None if y is None else y[train])
    return SeriesData(x, y, x_test, y_test, name=name, class_names=class_names,
                      lengths_train=lengths, lengths_test=lengths_test)


# ----- load() -----------------------------------------------------------------------------------
def is_series_source(source) -> bool:
    """Whether `source` names series on sight: `ucr:`/`uea:` names, `.csv`/`.ts` files, a `.npz`
    with a `series` key, or a dict with one."""
    if isinstance(source, Mapping):
        return "series" in source
    if not isinstance(source, (str, os.PathLike)):
        return False
    name = os.fspath(source)
    if name.lower().startswith(("ucr:", "uea:")):
        return True
    path = Path(name).expanduser()
    suffix = path.suffix.lower()
    if suffix in (".csv", ".ts"):
        return True
    return suffix == ".npz" and path.is_file() and npz_has_series(path)


def load(source, *, test_fraction: float = 0.2, seed: int = 0, max_examples: int | None = None,
         fill_nan: str | None = None, length: int | None = None) -> SeriesData:
    """Load a time-series source into a `SeriesData` (see the module docstring).

    Args:
        source: `"ucr:<Name>"`, a `.npz` (with `series`), `.csv` or `.ts` path, or arrays
            (`x`, `(x, y)`, or a dict with `series`).
        test_fraction: share of the labelled series held out when the source has no test split.
        seed: seeds the held-out split and `max_examples` subsets.
        max_examples: keep at most this many training series (class-stratified).
        fill_nan: what to do with NaN steps inside a series: None (an error), "interpolate" or
            "zero". Trailing all-NaN steps are padding whatever this says.
        length: resample every series to this many steps (linear interpolation), e.g. to make
            sets of different lengths match an encoder.
    """
    opts = dict(test_fraction=test_fraction, seed=seed, max_examples=max_examples,
                fill_nan=fill_nan, length=length)
    if isinstance(source, Mapping):
        return from_arrays(source, name="arrays", **opts)
    if isinstance(source, np.ndarray) or isinstance(source, list):
        return from_arrays({"series": source}, name="arrays", **opts)
    if isinstance(source, tuple):
        if len(source) not in (1, 2):
            raise KerasSSLError(f"Pass series as x or (x, y); got a tuple of {len(source)}.")
        return from_arrays({"series": source[0], "y": source[1] if len(source) == 2 else None},
                           name="arrays", **opts)
    if not isinstance(source, (str, os.PathLike)):
        raise KerasSSLError(f"Cannot load series from a {type(source).__name__}. "
                            f"{SERIES_SOURCES_HELP}")
    name = os.fspath(source)
    if name.lower().startswith(("ucr:", "uea:")):
        set_name = name.split(":", 1)[1].strip()
        return from_arrays(ucr_arrays(set_name), name=f"ucr:{set_name}", **opts)
    path = Path(name).expanduser()
    if not path.is_file():
        raise KerasSSLError(f"No such file: {name!r}. {SERIES_SOURCES_HELP}")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return from_arrays(read_npz(path), name=path.name, **opts)
    if suffix == ".csv":
        return from_arrays(read_csv(path), name=path.name, **opts)
    if suffix == ".ts":
        x, lengths, y = read_ts(path)
        return from_arrays({"series": x, "lengths": lengths, "y": y}, name=path.name, **opts)
    raise KerasSSLError(f"Don't know how to read {name!r} as series. {SERIES_SOURCES_HELP}")
