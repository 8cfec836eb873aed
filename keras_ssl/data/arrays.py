"""Arrays, `.npz` / `.npy` files and scikit-learn's bundled digits."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from keras_ssl.data.base import SSLData
from keras_ssl.data.convert import canonical_labels, canonical_x, finish
from keras_ssl.errors import KerasSSLError


def as_array_dict(source) -> dict:
    if isinstance(source, np.ndarray):
        return {"x": source}
    if isinstance(source, Mapping):
        return dict(source)
    if len(source) not in (1, 2):
        raise KerasSSLError(
            f"Pass arrays as x, (x,) or (x, y); got a {type(source).__name__} of {len(source)} items."
        )
    return {"x": source[0], "y": source[1] if len(source) == 2 else None}


def read_npz(path: Path) -> dict:
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):  # a .npy file
            return {"x": loaded}
        with loaded:
            return {key: loaded[key] for key in loaded.files}
    except Exception as e:  # BadZipFile, zlib.error, pickled data, truncated file, ...
        raise KerasSSLError(
            f"Could not read {path} as a .npz file ({type(e).__name__}: {e}). Save it with "
            "np.savez(path, x=images, y=labels) (optionally x_test=..., y_test=...)."
        ) from e


def load_arrays(arrays: dict, *, name, **opts) -> SSLData:
    keys = sorted(arrays)
    x = arrays.get("x", arrays.get("x_train"))
    y = arrays.get("y", arrays.get("y_train"))
    x_test, y_test = arrays.get("x_test"), arrays.get("y_test")
    if x is None:
        raise KerasSSLError(
            f"{name}: no examples under the key 'x' (found keys: {keys or 'none'}). Save the "
            "examples as x (and labels as y), e.g. np.savez(path, x=images, y=labels)."
        )
    x, kind = canonical_x(x, "x", name)
    if x_test is not None:
        x_test, kind_test = canonical_x(x_test, "x_test", name)
        if kind_test != kind:
            raise KerasSSLError(f"{name}: x holds {kind} but x_test holds {kind_test}.")
        if x_test.shape[1:] != x.shape[1:] and (kind == "vectors" or opts["image_size"] is None):
            hint = " Pass image_size to resize both." if kind == "images" else ""
            raise KerasSSLError(
                f"{name}: x examples have shape {x.shape[1:]} but x_test examples {x_test.shape[1:]}; "
                f"they must match.{hint}"
            )
        if kind == "images" and x_test.shape[-1] != x.shape[-1]:
            raise KerasSSLError(
                f"{name}: x has {x.shape[-1]} channel(s) but x_test {x_test.shape[-1]}; they must match."
            )
    elif y_test is not None:
        raise KerasSSLError(f"{name}: y_test is given without x_test.")
    y, y_test, class_names = canonical_labels(
        y, y_test, len(x), None if x_test is None else len(x_test), name
    )
    return finish(x, y, x_test, y_test, kind=kind, name=name, class_names=class_names, **opts)


def load_digits(*, image_size, **opts) -> SSLData:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., np.newaxis]
    y = digits.target.astype(np.int64)
    return finish(
        x,
        y,
        None,
        None,
        kind="images",
        name="digits",
        class_names=[str(i) for i in range(10)],
        image_size=image_size or (32, 32),
        **opts,
    )


def load_digits_vectors(**opts) -> SSLData:
    """The 8x8 digits as 64 float32 features in [0, 1] (pixel intensities 0-16 / 16)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return finish(
        (digits.data / 16.0).astype(np.float32),
        digits.target.astype(np.int64),
        None,
        None,
        kind="vectors",
        name="digits_vectors",
        class_names=[str(i) for i in range(10)],
        **opts,
    )
