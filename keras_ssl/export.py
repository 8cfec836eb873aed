"""Encoders out as TF Serving SavedModels, and back in as Keras layers.

Layout written by `export_encoder(model, "saved_models/simclr")`:

    saved_models/simclr/
        1/                              <- a version TF Serving loads (integer name)
            saved_model.pb, variables/  <- serving_default: images uint8 [None,H,W,C] -> embeddings
                                           (features float32 [None,F] for vector encoders,
                                           text tf.string [None] for text encoders)
            assets.extra/encoder.keras  <- native Keras copy, for fine-tuning (load_encoder)
            assets.extra/export.json    <- what was exported: input kind, shapes, source model
            assets.extra/tf_serving_warmup_requests  <- PredictRequests TF Serving replays on load
        2/ ...

A version is written into a hidden temporary folder beside the versions, loaded back and checked,
and only then renamed into place: TF Serving only picks up integer-named folders, and a rename is
atomic, so a crash never leaves a half-written version for a server to load. The temporary folder's
name carries the host and process id (`.tmp-<version>-<host>-pid<pid>-*`); one left behind by an
export that was killed (its process no longer runs on this host) is deleted by the next export.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_ssl.encoders import serving_model
from keras_ssl.errors import KerasSSLError
from keras_ssl.serving import warmup_inputs, write_warmup_requests

ENCODER_FILE = "encoder.keras"
METADATA_FILE = "export.json"
INPUT_NAMES = {"images": "images", "vectors": "features", "text": "text"}
INPUT_DTYPES = {"images": tf.uint8, "vectors": tf.float32, "text": tf.string}


def _serving_model_of(model) -> keras.Model:
    if hasattr(model, "serving_model"):
        return model.serving_model()
    if isinstance(model, keras.Model):
        return serving_model(model)
    raise KerasSSLError(
        f"export_encoder takes a keras_ssl method or a keras.Model encoder, got {type(model).__name__}."
    )


def _next_version(base: Path) -> int:
    versions = [int(p.name) for p in base.iterdir() if p.name.isdigit()] if base.exists() else []
    return max(versions, default=0) + 1


def check_export_path(path) -> None:
    """Fail now, before hours of training, when `path` cannot receive exported versions.

    Nothing is left behind: writability is tested by creating and removing a temporary folder in
    the nearest existing folder on the way to `path` (permission bits say nothing for root or on
    read-only and virtual file systems).
    """
    base = Path(path)
    if base.exists() and not base.is_dir():
        _check_base_dir(base)  # the existing-file message
    parent = base
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise KerasSSLError(
            f"Cannot create the export folder {str(base)!r}: {str(parent)!r} is a file."
        )
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".keras-ssl-write-test-", dir=parent))
    except OSError as err:
        raise KerasSSLError(
            f"Cannot write the export folder {str(base)!r}: {str(parent)!r} is not writable "
            f"({err.strerror}). Choose another --export path."
        ) from err


def _check_base_dir(base: Path) -> None:
    if base.exists() and not base.is_dir():
        raise KerasSSLError(
            f"Export path {str(base)!r} is an existing file. Give a folder path: versions are "
            "written inside it as <path>/1/, <path>/2/, ..."
        )
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise KerasSSLError(f"Cannot create the export folder {str(base)!r}: {err.strerror}.") from err
    if not os.access(base, os.W_OK):
        raise KerasSSLError(f"Export folder {str(base)!r} is not writable; choose another path.")


def _input_kind(model: keras.Model) -> str:
    """What a serving model takes: strings `[N]` (text), images `[N,H,W,C]` or vectors `[N,F]`."""
    if model.inputs[0].dtype == "string":
        return "text"
    return "images" if len(model.input_shape) == 4 else "vectors"


def _write_savedmodel(model: keras.Model, path: Path) -> dict:
    kind = _input_kind(model)
    spec = tf.TensorSpec(
        [None, *model.input_shape[1:]], INPUT_DTYPES[kind], name=INPUT_NAMES[kind]
    )

    def serve(inputs):
        return {"embeddings": tf.cast(model(inputs, training=False), tf.float32)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", serve, input_signature=[spec])
    archive.write_out(str(path), verbose=False)
    return {
        "input_kind": kind,
        "input_name": spec.name,
        "input_dtype": spec.dtype.name,
        "input_shape": [None, *model.input_shape[1:]],
        "embedding_dim": int(model.output_shape[-1]),
    }


def validate_export(path, expected: np.ndarray | None = None, probe=None) -> None:
    """Load a SavedModel version and check its signature, output shape and finite outputs."""
    loaded = tf.saved_model.load(str(path))
    if "serving_default" not in loaded.signatures:
        raise KerasSSLError(f"{path} has no serving_default signature.")
    signature = loaded.signatures["serving_default"]
    (name, spec), = signature.structured_input_signature[1].items()
    if probe is None and spec.dtype == tf.string:
        probe = np.array(["", "a probe sentence"], dtype=object)
    elif probe is None:
        shape = [2 if d is None else d for d in spec.shape]
        probe = np.zeros(shape, spec.dtype.as_numpy_dtype)
    outputs = signature(**{name: tf.constant(probe)})
    if set(outputs) != {"embeddings"}:
        raise KerasSSLError(f"{path}: serving_default returns {sorted(outputs)}, not 'embeddings'.")
    embeddings = outputs["embeddings"].numpy()
    if embeddings.shape[0] != len(probe) or not np.all(np.isfinite(embeddings)):
        raise KerasSSLError(f"{path}: the exported encoder gave non-finite or misshapen embeddings.")
    if expected is not None and embeddings.shape != np.shape(expected):
        raise KerasSSLError(
            f"{path}: the exported encoder gives embeddings of shape {embeddings.shape}, the "
            f"in-memory one {np.shape(expected)}."
        )
    if expected is not None and not np.allclose(embeddings, expected, rtol=1e-4, atol=1e-4):
        raise KerasSSLError(f"{path}: the exported encoder does not reproduce the in-memory one.")


def export_encoder(model, path="saved_models/encoder", version: int | None = None) -> Path:
    """Export the encoder of `model` as `<path>/<version>/`, the layout TF Serving reads.

    Args:
        model: a keras_ssl method (its encoder is exported, heads are dropped) or an encoder.
        path: the model's folder; versions are integer sub-folders.
        version: the version number; default one more than the highest present. An existing
            version is never overwritten.

    Returns:
        The path of the new version folder.

    The signature `serving_default` takes `images` (uint8 `[None, H, W, C]`; conversion to float
    happens inside), `features` (float32 `[None, F]`) or `text` (tf.string `[None]`, for a
    `MaskedLanguageModel`: tokenisation happens inside) and returns `embeddings` (float32
    `[None, D]`).
    """
    base = Path(path)
    _check_base_dir(base)
    version = _next_version(base) if version is None else int(version)
    final = base / str(version)
    if final.exists():
        raise KerasSSLError(
            f"Version {final} already exists and is never overwritten; omit version= to write "
            "the next one."
        )
    serving = _serving_model_of(model)
    remove_stale_staging(base)
    staging = Path(tempfile.mkdtemp(
        prefix=f"{STAGING_PREFIX}{version}-{socket.gethostname()}-pid{os.getpid()}-", dir=base
    ))
    try:
        metadata = _write_savedmodel(serving, staging)
        extra = staging / "assets.extra"
        extra.mkdir(exist_ok=True)
        serving.save(extra / ENCODER_FILE)
        metadata["source"] = type(model).__name__
        (extra / METADATA_FILE).write_text(json.dumps(metadata, indent=2))
        spec = tf.TensorSpec(metadata["input_shape"], metadata["input_dtype"])
        write_warmup_requests(staging, model_name=base.resolve().name,
                              inputs=warmup_inputs(spec), input_name=metadata["input_name"])
        probe = _probe_batch(serving)
        expected = (
            # Keras' predict() cannot batch NumPy strings; a direct call can.
            serving(tf.constant(probe), training=False).numpy()
            if metadata["input_kind"] == "text"
            else serving.predict(probe, verbose=0)
        )
        validate_export(staging, expected=expected, probe=probe)
        _fsync_tree(staging)
        try:
            os.rename(staging, final)
        except OSError as err:  # another export wrote this version meanwhile
            raise KerasSSLError(
                f"Could not publish {final} ({err.strerror}): another export wrote that version "
                "meanwhile. Export again to write the next version."
            ) from err
        _fsync_dir(base)  # make the rename itself durable
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def _probe_batch(serving: keras.Model) -> np.ndarray:
    rng = np.random.default_rng(0)
    shape = (2, *serving.input_shape[1:])
    if serving.inputs[0].dtype == "string":
        return np.array(["The quick brown fox jumps over the lazy dog.", ""], dtype=object)
    if serving.inputs[0].dtype == "uint8":
        return rng.integers(0, 256, shape, dtype=np.uint8)
    return rng.standard_normal(shape).astype("float32")


STAGING_PREFIX = ".tmp-"
_STAGING_NAME = re.compile(r"\.tmp-\d+-(?P<host>.+)-pid(?P<pid>\d+)-[^/]+")


def remove_stale_staging(base) -> list[Path]:
    """Delete the temporary folders of killed exports in `base`; returns the deleted paths.

    Only folders written from this host by a process that no longer runs are deleted: an export
    still under way (here or on another host sharing the folder) keeps its folder. TF Serving
    ignores these folders either way (their names are not integers).
    """
    removed = []
    host = socket.gethostname()
    for path in Path(base).glob(f"{STAGING_PREFIX}*"):
        match = _STAGING_NAME.fullmatch(path.name)
        if match is None or match["host"] != host or _process_alive(int(match["pid"])):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """Flush the files to disk before the rename publishes them."""
    for folder, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(folder, name), "rb") as f:
                os.fsync(f.fileno())


def resolve_version(path) -> Path:
    """A version folder as given, or the newest integer version inside a model folder."""
    path = Path(path)
    if not path.exists():
        raise KerasSSLError(f"No exported encoder at {str(path)!r}: no such folder.")
    if (path / "saved_model.pb").exists():
        return path
    versions = sorted((int(p.name) for p in path.iterdir() if p.name.isdigit()), reverse=True)
    if not versions:
        raise KerasSSLError(
            f"{str(path)!r} holds no SavedModel and no version folders (1/, 2/, ...). Point at a "
            "folder written by export_encoder."
        )
    return path / str(versions[0])


def load_encoder(path, trainable: bool = False) -> keras.Model:
    """Load an exported encoder for a downstream Keras model.

    Args:
        path: a version folder, or a model folder (its newest version is used).
        trainable: False (default) for a frozen feature extractor (linear probe); True to
            fine-tune it. Fine-tuning uses the native Keras copy saved beside the SavedModel,
            since a SavedModel wrapped in `TFSMLayer` cannot be trained with Adam and never
            updates its batch-norm statistics.

    Returns:
        A `keras.Model` from raw inputs (uint8 images or float32 vectors) to embeddings.

    Example:
    >>> encoder = load_encoder("saved_models/simclr")            # doctest: +SKIP
    >>> inputs = keras.Input(encoder.input_shape[1:], dtype="uint8")   # doctest: +SKIP
    >>> outputs = keras.layers.Dense(10)(encoder(inputs))        # doctest: +SKIP
    """
    version = resolve_version(path)
    native = version / "assets.extra" / ENCODER_FILE
    if native.exists():
        model = keras.saving.load_model(native)
        model.trainable = trainable
        return model
    if trainable:
        raise KerasSSLError(
            f"{version} has no {ENCODER_FILE} copy, and a bare SavedModel cannot be fine-tuned in "
            "Keras. Re-export it with keras_ssl.export_encoder, or load it frozen (trainable=False)."
        )
    layer = keras.layers.TFSMLayer(str(version), call_endpoint="serving_default", trainable=False)
    loaded = tf.saved_model.load(str(version)).signatures["serving_default"]
    (name, spec), = loaded.structured_input_signature[1].items()
    inputs = keras.Input(shape=spec.shape[1:], dtype=spec.dtype.name, name=name)
    outputs = layer(inputs)["embeddings"]
    return keras.Model(inputs, outputs, name="exported_encoder")
