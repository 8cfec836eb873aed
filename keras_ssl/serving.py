"""What TF Serving needs beside an exported encoder: warm-up requests, a models.config, requests.

- `write_warmup_requests(version_dir)` writes `assets.extra/tf_serving_warmup_requests`, a TFRecord
  of `PredictionLog`s that TF Serving replays when it loads the version, so the first user request
  does not pay for graph initialisation. `export_encoder` calls it for every version.
- `write_models_config({"simclr": ..., "moco": ...}, "models.config")` writes the text-format
  `ModelServerConfig` that serves several encoders from one server (`--model_config_file`).
- `rest_request_body(images)` and `predict_request(images)` build the REST (port 8501) and gRPC
  (port 8500) requests of the example clients in `examples/serving/`.

The protos come from `tensorflow-serving-api` (a dependency of keras-ssl: it needs nothing that
TensorFlow does not already bring).

>>> import numpy as np
>>> body = rest_request_body(np.zeros((2, 8, 8, 1), "uint8"))
>>> sorted(body), body["signature_name"], len(body["instances"])
(['instances', 'signature_name'], 'serving_default', 2)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_ssl.errors import KerasSSLError

WARMUP_FILE = "tf_serving_warmup_requests"
SIGNATURE = "serving_default"
# TF Serving replays at most 1000 warm-up records; a single image and a full batch are the two
# shapes a server meets most, and each record costs load time.
WARMUP_BATCH_SIZES = (1, 8)
_WARMUP_WORDS = np.array("the a of to in is model data text that for with each".split())
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def _serving_protos():
    try:
        from tensorflow_serving.apis import predict_pb2, prediction_log_pb2
    except ImportError as err:  # pragma: no cover - it is a dependency; this is a broken install
        raise KerasSSLError(
            "The TF Serving protos are missing: pip install tensorflow-serving-api "
            "(it installs alongside TensorFlow without changing it)."
        ) from err
    return predict_pb2, prediction_log_pb2


def _signature_input(version_dir) -> tuple[str, tf.TensorSpec]:
    """The (name, spec) of the single input of a SavedModel's serving_default signature."""
    signature = tf.saved_model.load(str(version_dir)).signatures[SIGNATURE]
    (name, spec), = signature.structured_input_signature[1].items()
    return name, spec


# ----- gRPC / warm-up: PredictRequest ---------------------------------------------------------
def predict_request(inputs, model_name: str = "encoder", input_name: str = "images",
                    signature_name: str = SIGNATURE, version: int | None = None):
    """A `tensorflow_serving.apis.predict_pb2.PredictRequest` carrying one batch of inputs.

    Args:
        inputs: uint8 images `[N, H, W, C]` (float32 features `[N, F]` for vector encoders,
            strings `[N]` for text encoders).
        model_name: the name the server knows the model by (`MODEL_NAME` / models.config).
        input_name: the signature's input, `images` (or `features`).
        signature_name: the SavedModel signature to run.
        version: a specific version, or None for the newest one the server has.

    Example:
    >>> request = predict_request(np.zeros((1, 8, 8, 1), "uint8"), model_name="simclr")
    >>> request.model_spec.name, list(request.inputs)
    ('simclr', ['images'])
    """
    predict_pb2, _ = _serving_protos()
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = int(version)
    request.inputs[input_name].CopyFrom(tf.make_tensor_proto(np.asarray(inputs)))
    return request


def warmup_inputs(spec: tf.TensorSpec, batch_sizes=WARMUP_BATCH_SIZES, seed: int = 0):
    """Random inputs of the signature's dtype and shape, one batch per size in `batch_sizes`."""
    rng = np.random.default_rng(seed)
    shape = [int(d) for d in spec.shape[1:]]
    batches = []
    for size in batch_sizes:
        if spec.dtype == tf.uint8:
            batches.append(rng.integers(0, 256, (size, *shape), dtype=np.uint8))
        elif spec.dtype == tf.string:
            # Text encoders vectorise inside the SavedModel: any sentence exercises every op.
            words = rng.choice(_WARMUP_WORDS, (size, *shape, 12))
            batches.append(np.array([" ".join(w) for w in words.reshape(-1, 12)],
                                    dtype=object).reshape((size, *shape)))
        else:
            batches.append(rng.standard_normal((size, *shape)).astype(spec.dtype.as_numpy_dtype))
    return batches


def write_warmup_requests(version_dir, model_name: str | None = None, inputs=None,
                          input_name: str | None = None) -> Path:
    """Write `<version_dir>/assets.extra/tf_serving_warmup_requests` and return its path.

    Each record is a `PredictionLog` holding a `PredictRequest` for the `serving_default`
    signature; TF Serving runs them when it loads the version (see "SavedModel Warmup" in the
    TF Serving guide).

    Args:
        version_dir: an exported SavedModel version folder.
        model_name: name put in the requests' model_spec (default: the model folder's name).
        inputs: the input batches to send, of the signature's dtype; default a single random
            input and a batch of 8 (read from the signature).
        input_name: the signature's input name; read from the SavedModel when not given.
    """
    _, prediction_log_pb2 = _serving_protos()
    version_dir = Path(version_dir)
    if inputs is None or input_name is None:
        input_name, spec = _signature_input(version_dir)
        if inputs is None:
            inputs = warmup_inputs(spec)
    model_name = model_name or version_dir.resolve().parent.name or "encoder"
    extra = version_dir / "assets.extra"
    extra.mkdir(exist_ok=True)
    path = extra / WARMUP_FILE
    with tf.io.TFRecordWriter(str(path)) as writer:
        for batch in inputs:
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(
                    request=predict_request(batch, model_name, input_name)
                )
            )
            writer.write(log.SerializeToString())
    return path


def read_warmup_requests(path) -> list:
    """The `PredictRequest`s of a warm-up file (a version folder or the file itself)."""
    _, prediction_log_pb2 = _serving_protos()
    path = Path(path)
    if path.is_dir():
        path = path / "assets.extra" / WARMUP_FILE
    if not path.exists():
        raise KerasSSLError(f"No warm-up file at {str(path)!r}; export the encoder again.")
    requests = []
    for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
        log = prediction_log_pb2.PredictionLog.FromString(record)
        if log.WhichOneof("log_type") != "predict_log":
            raise KerasSSLError(f"{path} holds a {log.WhichOneof('log_type')}, not a predict_log.")
        requests.append(log.predict_log.request)
    return requests


# ----- REST ------------------------------------------------------------------------------------
def rest_request_body(inputs, signature_name: str = SIGNATURE, input_name: str = "images",
                      columnar: bool = False) -> dict:
    """The JSON body of a TF Serving REST predict request (`POST /v1/models/<name>:predict`).

    Row format (default): `{"signature_name": ..., "instances": [example, ...]}` with one nested
    list per image. Columnar (`columnar=True`): `{"signature_name": ..., "inputs": {input_name:
    [...]}}`. uint8 pixels travel as JSON integers; the server casts them to the signature's dtype.
    """
    array = np.asarray(inputs)
    if array.ndim < 2:
        raise KerasSSLError(
            f"rest_request_body takes a batch [N, ...], got shape {array.shape}; add a batch axis."
        )
    values = array.tolist()
    if columnar:
        return {"signature_name": signature_name, "inputs": {input_name: values}}
    return {"signature_name": signature_name, "instances": values}


def rest_response_embeddings(response: dict) -> np.ndarray:
    """Embeddings `[N, D]` from a REST predict response (row `predictions` or columnar `outputs`)."""
    if "predictions" in response:
        predictions = response["predictions"]
        if predictions and isinstance(predictions[0], dict):
            predictions = [p["embeddings"] for p in predictions]
        return np.asarray(predictions, dtype="float32")
    if "outputs" in response:
        outputs = response["outputs"]
        return np.asarray(outputs["embeddings"] if isinstance(outputs, dict) else outputs,
                          dtype="float32")
    raise KerasSSLError(f"Unexpected TF Serving response: {json.dumps(response)[:200]}")


# ----- models.config -----------------------------------------------------------------------------
def models_config_text(models: dict) -> str:
    """The text-format `ModelServerConfig` that serves each `{name: base_path}` of `models`."""
    from google.protobuf import text_format

    try:
        from tensorflow_serving.config import model_server_config_pb2
    except ImportError as err:  # pragma: no cover - see _serving_protos
        raise KerasSSLError("The TF Serving protos are missing: pip install "
                            "tensorflow-serving-api.") from err
    if not models:
        raise KerasSSLError("write_models_config needs at least one {name: path} entry.")
    config = model_server_config_pb2.ModelServerConfig()
    for name, base_path in models.items():
        if not isinstance(name, str) or not _MODEL_NAME.match(name):
            raise KerasSSLError(
                f"Model name {name!r} is not usable in a TF Serving URL; use letters, digits, "
                "'_', '-' and '.', e.g. 'simclr'."
            )
        _check_model_folder(name, base_path)
        entry = config.model_config_list.config.add()
        entry.name = name
        entry.base_path = str(base_path)
        entry.model_platform = "tensorflow"
    return text_format.MessageToString(config)


def write_models_config(models: dict, path) -> Path:
    """Write a TF Serving `models.config` serving several encoders; return its path.

    Args:
        models: `{name: base_path}`; each base path is the folder holding the integer versions,
            as the server sees it (inside the container: e.g. `/models/simclr`).
        path: the file to write.

    Example:
    >>> import tempfile, os
    >>> out = write_models_config({"simclr": "/models/simclr"},
    ...                           os.path.join(tempfile.mkdtemp(), "models.config"))
    >>> print(out.read_text().strip().splitlines()[2])
        name: "simclr"

    Serve it with `docker run ... tensorflow/serving --model_config_file=/models/models.config`.
    """
    text = models_config_text(models)
    path = Path(path)
    if path.is_dir():
        raise KerasSSLError(f"{str(path)!r} is a folder; give the models.config file path.")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _check_model_folder(name: str, base_path) -> None:
    """A base path that exists here must hold versions; one that does not may be a server path."""
    folder = Path(base_path)
    if not folder.exists():
        return
    if not folder.is_dir() or not any(p.name.isdigit() for p in folder.iterdir()):
        raise KerasSSLError(
            f"Model {name!r}: {str(base_path)!r} holds no integer version folders (1/, 2/, ...). "
            "Give the folder export_encoder wrote, e.g. saved_models/simclr, not a version inside it."
        )


def resolve_version(path) -> Path:
    """A version folder as given, or the newest integer version inside a model folder: the
    layout TF Serving reads. Anything else is a one-line error that says what was found."""
    path = Path(path)
    if not path.exists():
        raise KerasSSLError(f"No exported encoder at {str(path)!r}: no such folder.")
    if not path.is_dir():
        raise KerasSSLError(
            f"{str(path)!r} is a file, not an exported encoder: give the model folder (e.g. "
            "saved_models/simclr) or one of its version folders."
        )
    if (path / "saved_model.pb").exists():
        return path
    versions = sorted((int(p.name) for p in path.iterdir() if p.name.isdigit()), reverse=True)
    if not versions and path.name.isdigit():
        raise KerasSSLError(
            f"{str(path)!r} is a version folder without saved_model.pb: an incomplete export. "
            "Use another version, or export again."
        )
    if not versions:
        raise KerasSSLError(
            f"{str(path)!r} holds no SavedModel and no version folders (1/, 2/, ...). Point at a "
            "folder written by export_encoder."
        )
    return path / str(versions[0])


def check_fits(path, input_shape, kind: str) -> None:
    """Fail in one line, before any work, when the encoder exported at `path` cannot embed
    examples of `input_shape` and `kind` (a text encoder given images, a 16 px encoder given 32 px
    images, ...)."""
    version = resolve_version(path)
    loaded = tf.saved_model.load(str(version))
    signature = loaded.signatures.get("serving_default")
    if signature is None:
        raise KerasSSLError(f"{str(version)!r} has no serving_default signature; export it with "
                            "keras_ssl.export_encoder.")
    (name, spec), = signature.structured_input_signature[1].items()
    takes = "text" if spec.dtype == tf.string else name
    given = {"images": "images", "vectors": "features", "text": "text"}.get(kind, kind)
    if takes != given:
        raise KerasSSLError(
            f"The encoder at {str(version)!r} takes {takes}, but the data are {kind}. Embed data "
            "of the kind it was trained on."
        )
    expected = tuple(spec.shape[1:])
    if kind != "text" and None not in expected and expected != tuple(input_shape):
        raise KerasSSLError(
            f"The encoder at {str(version)!r} takes {name} of shape {expected}, but the data's "
            f"are {tuple(input_shape)}. Resize the data to match (--image-size) or use an "
            "encoder exported for this shape."
        )
