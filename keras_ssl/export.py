"""Encoders out as TF Serving SavedModels, and back in as Keras layers.

Layout written by `export_encoder(model, "saved_models/simclr")`:

    saved_models/simclr/
        1/                              <- a version TF Serving loads (integer name)
            saved_model.pb, variables/  <- serving_default: images uint8 [None,H,W,C] -> embeddings
                                           (features float32 [None,F] for vector encoders,
                                           text tf.string [None] for text encoders,
                                           series float32 [None,T,F] for series encoders)
            assets.extra/encoder.keras  <- native Keras copy, for fine-tuning (load_encoder)
            assets.extra/export.json    <- what was exported: input kind, shapes, source model
            assets.extra/tf_serving_warmup_requests  <- PredictRequests TF Serving replays on load
        2/ ...

A version is written into a hidden temporary folder beside the versions, loaded back and checked,
and only then renamed into place: TF Serving only picks up integer-named folders, and a rename is
atomic, so a crash never leaves a half-written version for a server to load. The temporary folder's
name carries the host and process id (`.tmp-<version>-<host>-pid<pid>-*`); one left behind by an
export that was killed (its process no longer runs on this host) is deleted by the next export.

The version number is claimed by that rename itself: it never replaces an existing folder
(`renameat2(RENAME_NOREPLACE)` on Linux; elsewhere a rename onto a non-empty folder fails), so
when several processes export into one model folder at once, the one that loses a number takes
the next free one. Every writer gets its own version and none is overwritten.

A write that fails for lack of space (a full disk, a quota, a file-size limit) removes the
temporary folder and raises `guards.DiskFullError`, one line saying that the versions already
there are unchanged and what to do.
"""

from __future__ import annotations

import ctypes
import errno
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
from keras_ssl.encoders.series import is_series_encoder
from keras_ssl.encoders.series import serving_model as series_serving_model
from keras_ssl.errors import KerasSSLError
from keras_ssl.guards import DiskFullError, disk_full_reason
from keras_ssl.serving import resolve_version, warmup_inputs, write_warmup_requests

ENCODER_FILE = "encoder.keras"
METADATA_FILE = "export.json"
INPUT_NAMES = {"images": "images", "vectors": "features", "text": "text"}
INPUT_DTYPES = {"images": tf.uint8, "vectors": tf.float32, "text": tf.string}
# Time series: float32 [None, T, F] under the name `series`.
INPUT_NAMES["series"] = "series"
INPUT_DTYPES["series"] = tf.float32


def _serving_model_of(model) -> keras.Model:
    encoder = getattr(model, "embedding_encoder", getattr(model, "encoder", model))
    if is_series_encoder(encoder):
        # Any method on series (SimCLR included) exports its encoder behind a `series` input.
        return series_serving_model(encoder)
    if hasattr(model, "serving_model"):
        return model.serving_model()
    if isinstance(model, keras.Model):
        return serving_model(model)
    raise KerasSSLError(
        f"export_encoder takes a keras_ssl method or a keras.Model encoder, got {type(model).__name__}."
    )


def _versions(base: Path) -> list[int]:
    return sorted(int(p.name) for p in base.iterdir() if p.name.isdigit()) if base.exists() else []


def _next_version(base: Path) -> int:
    return max(_versions(base), default=0) + 1


_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


def _renameat2():
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):  # not Linux, or a C library without it
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                         ctypes.c_uint]
    return function


_RENAMEAT2 = _renameat2()


def _rename_no_replace(source: Path, target: Path) -> None:
    """Rename `source` to `target`, failing with FileExistsError when `target` exists (atomic)."""
    if _RENAMEAT2 is not None:
        result = _RENAMEAT2(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target),
                            _RENAME_NOREPLACE)
        if result == 0:
            return
        number = ctypes.get_errno()
        if number not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            raise OSError(number, os.strerror(number), str(target))
        # This file system cannot refuse to replace: fall back to a plain rename.
    if target.exists():
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target))
    # A rename onto an existing, non-empty folder fails (ENOTEMPTY); the exports' staging folders
    # are never empty, so two writers can never both own one number.
    os.rename(source, target)


def _publish(staging: Path, base: Path, version: int | None) -> Path:
    """Rename the finished `staging` folder to the version number it can claim.

    With `version` None, the next free number is taken, and the one after it when another export
    took that one meanwhile; an explicit `version` that exists is an error.
    """
    number = _next_version(base) if version is None else version
    for _ in range(10_000):
        final = base / str(number)
        try:
            _rename_no_replace(staging, final)
            return final
        except OSError as err:
            if err.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR, errno.ENOTDIR):
                raise
            if version is not None:
                raise KerasSSLError(
                    f"Version {final} already exists and is never overwritten; omit version= to "
                    "write the next one."
                ) from err
        number = max(number + 1, _next_version(base))
    raise KerasSSLError(f"Could not claim a free version number in {str(base)!r}.")


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
    if len(model.input_shape) == 3:
        return "series"
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
    version = None if version is None else int(version)
    if version is not None and (base / str(version)).exists():
        raise KerasSSLError(
            f"Version {base / str(version)} already exists and is never overwritten; omit "
            "version= to write the next one."
        )
    serving = _serving_model_of(model)
    remove_stale_staging(base)
    before = _versions(base)
    label = _next_version(base) if version is None else version  # only names the staging folder
    staging = None
    writing = "the temporary folder"  # what was being written, for the disk-full message
    try:
        staging = Path(tempfile.mkdtemp(
            prefix=f"{STAGING_PREFIX}{label}-{socket.gethostname()}-pid{os.getpid()}-", dir=base
        ))
        writing = "the SavedModel"
        metadata = _write_savedmodel(serving, staging)
        extra = staging / "assets.extra"
        extra.mkdir(exist_ok=True)
        writing = ENCODER_FILE
        serving.save(extra / ENCODER_FILE)
        metadata["source"] = type(model).__name__
        writing = METADATA_FILE
        (extra / METADATA_FILE).write_text(json.dumps(metadata, indent=2))
        spec = tf.TensorSpec(metadata["input_shape"], metadata["input_dtype"])
        writing = "the warm-up requests"
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
        writing = "the version (flushing it to disk)"
        _fsync_tree(staging)
        final = _publish(staging, base, version)
        _fsync_dir(base)  # make the rename itself durable
    except BaseException as err:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        reason = disk_full_reason(err)
        if reason is None:
            raise
        kept = (
            f"the versions already there ({', '.join(map(str, before))}) are unchanged"
            if before else "no earlier version was there"
        )
        raise DiskFullError(
            f"Could not export to {str(base)!r}: {reason} ({_failed_file(err, writing)}). Nothing was "
            f"published and the half-written version was removed; {kept}. Free some space (or "
            "raise the file-size limit, ulimit -f) and export again, or choose another --export "
            "path."
        ) from err
    return final


def _failed_file(err: BaseException, writing: str) -> str:
    """The file whose write failed, from an OSError or a TensorFlow error, else `writing`."""
    while err is not None:
        name = err.filename if isinstance(err, OSError) and err.filename else None
        match = None if name else re.search(r"(/\S+?)[;:] ", str(err))
        if name or match:
            # TensorFlow writes `<name>.tempstate<n>` or `<name>.tmp<hex>`, then renames it.
            return "writing " + re.sub(r"\.(tempstate\d+|tmp[0-9a-f]{32})$", "",
                                       Path(name or match.group(1)).name)
        err = err.__cause__ or err.__context__
    return f"writing {writing}"


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
