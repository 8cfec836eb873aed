"""Encoders by name: each builder registers itself with the kind of input it takes, so the
command line, `keras_ssl.pretrain` and the defaults find it, and a wrong kind gets a clear error.

>>> "convnet" in names("images"), names("vectors")
(True, ['mlp'])
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import os
from collections.abc import Callable

import keras

from keras_ssl.errors import KerasSSLError

# The rank of one example each kind of encoder takes: (H, W, C), (F,), (L,) token ids, (T, F).
INPUT_RANKS = {"images": 3, "vectors": 1, "text": 1, "series": 2}
_SUGGEST = {"images": "convnet or resnet18", "vectors": "mlp", "text": "transformer or lstm",
            "series": "resnet1d or series_transformer"}


@dataclasses.dataclass(frozen=True)
class EncoderEntry:
    """A registered encoder: `builder(input_shape, width=None, **options) -> keras.Model`."""

    builder: Callable[..., keras.Model]
    kind: str


ENCODERS: dict[str, EncoderEntry] = {}


def register_encoder(name: str, kind: str):
    """Register `builder(input_shape, width=None, **options)` under `name` for inputs of `kind`."""
    if kind not in INPUT_RANKS:
        raise KerasSSLError(f"Encoder kind must be one of {', '.join(INPUT_RANKS)}, got {kind!r}.")

    def decorate(builder):
        ENCODERS[name] = EncoderEntry(builder, kind)
        return builder

    return decorate


def register_fixed_width(names, kind: str, build_named) -> None:
    """Register `build_named(name, input_shape, weights=None)` under each of `names`: encoders of
    a fixed size (keras.applications, keras-hub), which refuse a width."""

    def builder(name):
        def build(input_shape, width=None, weights=None):
            if width is not None:
                raise KerasSSLError(f"{name} has a fixed width; drop the width option.")
            return build_named(name, input_shape, weights=weights)

        return build

    for name in names:
        register_encoder(name, kind)(builder(name))


def names(kind: str) -> list[str]:
    """The registered encoder names for inputs of `kind`."""
    return [name for name, entry in ENCODERS.items() if entry.kind == kind]


def build(name: str, input_shape, width: int | None = None, *, kind: str | None = None,
          **options) -> keras.Model:
    """Build the encoder registered as `name` for examples of `input_shape`.

    `kind` ("images", "vectors", "text", "series") says what the data are when the shape alone
    cannot (vectors and token ids are both rank 1); text encoders also take `vocab_size`.
    `weights`: a file to start from instead of random init (what the encoder's builder reads, e.g.
    a keras.applications `.h5` or a keras-hub preset folder; for the others a `.weights.h5` file).
    """
    key = str(name).lower()
    if key not in ENCODERS:
        close = difflib.get_close_matches(key, ENCODERS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise KerasSSLError(f"Unknown encoder {name!r}.{hint} Choose one of: {', '.join(ENCODERS)}.")
    entry = ENCODERS[key]
    shape = tuple(input_shape)
    data_kind = kind or next((k for k, rank in INPUT_RANKS.items() if rank == len(shape)), None)
    if data_kind == "vectors" and entry.kind == "text":
        data_kind = "text"
    if data_kind != entry.kind:
        what = {"images": "images", "vectors": "feature vectors", "text": "token ids",
                "series": "time series"}
        raise KerasSSLError(
            f"The {key} encoder takes {what[entry.kind]}, but the data are "
            f"{what.get(data_kind, 'inputs')} of shape {shape}. Use --encoder "
            f"{_SUGGEST.get(data_kind, 'for that kind of data')}."
        )
    weights = options.pop("weights", None)
    if weights is not None and "weights" in inspect.signature(entry.builder).parameters:
        return entry.builder(shape, width=width, weights=weights, **options)
    encoder = entry.builder(shape, width=width, **options)
    if weights is not None:
        load_weights(encoder, weights)
    return encoder


def load_weights(encoder: keras.Model, path) -> None:
    """Load a `.weights.h5` file saved from an encoder of the same architecture into `encoder`."""
    path = os.fspath(path)
    if not os.path.isfile(path) or not path.endswith(".weights.h5"):
        raise KerasSSLError(
            f"Encoder weights {path!r} are not a .weights.h5 file. Pass one saved from the same "
            "encoder (encoder.save_weights('encoder.weights.h5')), or no weights for random init."
        )
    try:
        encoder.load_weights(path)
    except (ValueError, OSError, KeyError) as err:
        raise KerasSSLError(
            f"{path} does not fit the {encoder.name} encoder ({encoder.count_params():,} "
            "parameters): its weights have other shapes. Build the encoder it was saved from "
            "(the same --encoder and --width)."
        ) from err


__all__ = ["ENCODERS", "INPUT_RANKS", "EncoderEntry", "build", "load_weights", "names",
           "register_encoder", "register_fixed_width"]
