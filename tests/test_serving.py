"""TF Serving without a server: REST bodies and warm-up requests run through the exported signature.

No TF Serving binary can run here, so each test checks one piece of what a server would do with
what keras-ssl writes: the REST JSON body of the example client fed to the SavedModel's signature
in another process (`saved_model_cli run`, and TF Serving's JSON rules in a plain script), the
warm-up TFRecord parsed as `PredictRequest`s and run through the signature, the models.config
parsed as a `ModelServerConfig`, and the clients against in-process fake servers.
"""

import importlib.util
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

import keras_ssl
from keras_ssl import encoders, serving
from keras_ssl.errors import KerasSSLError

CLIENTS = REPO / "examples" / "serving"


def _load_client(name):
    sys.path.insert(0, str(CLIENTS))  # client_grpc reuses client_rest's image loading
    spec = importlib.util.spec_from_file_location(name, CLIENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A SimCLR encoder, its export folder and held-out images to send."""
    keras.utils.set_random_seed(0)
    model = keras_ssl.SimCLR(encoders.ConvNet((16, 16, 1), width=4), projection_dim=8)
    base = tmp_path_factory.mktemp("models") / "simclr"
    version = keras_ssl.export_encoder(model, base)
    images = np.random.default_rng(1).integers(0, 256, (3, 16, 16, 1), dtype=np.uint8)
    return model, base, version, images


def _run(args, **kwargs):
    result = subprocess.run(args, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_rest_body_through_saved_model_cli_gives_the_encoders_embeddings(exported, tmp_path):
    model, _, version, images = exported
    client = _load_client("client_rest")
    body = json.loads(client.build_request_body(images))
    assert body["signature_name"] == "serving_default" and len(body["instances"]) == 3
    # The instances are plain JSON integers; saved_model_cli (another process) parses them as a
    # Python literal and feeds them to the uint8 input, as TF Serving casts JSON numbers.
    instances = json.dumps(body["instances"])
    _run(["saved_model_cli", "run", "--dir", str(version), "--tag_set", "serve",
          "--signature_def", body["signature_name"], "--input_exprs", f"images={instances}",
          "--outdir", str(tmp_path), "--overwrite"])
    served = np.load(tmp_path / "embeddings.npy")
    expected = keras_ssl.evaluate.embed(model, images)
    assert served.shape == (3, model.feature_dim)
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-5)


# One other process plays the server for the next tests (each TF start costs seconds): TF
# Serving's REST rules for a single-input signature (row format stacks "instances", each a value
# or an object naming the input; columnar "inputs" is the batch or {name: batch}), then every
# warm-up record parsed as a PredictionLog and run through the signature.
SERVE = """
import json, sys, numpy as np, tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2
version, warmup, out_path, *bodies = sys.argv[1:]
signature = tf.saved_model.load(version).signatures["serving_default"]
(name, spec), = signature.structured_input_signature[1].items()
results = {}
for i, path in enumerate(bodies):
    body = json.load(open(path))
    if "instances" in body:
        rows = [r[name] if isinstance(r, dict) else r for r in body["instances"]]
    else:
        rows = body["inputs"][name] if isinstance(body["inputs"], dict) else body["inputs"]
    values = np.asarray(rows)
    assert np.array_equal(values, values.astype(spec.dtype.as_numpy_dtype)), "lossy cast"
    out = signature(**{name: tf.constant(values, dtype=spec.dtype)})["embeddings"]
    results[f"rest{i}"] = out.numpy()
for i, record in enumerate(tf.data.TFRecordDataset(warmup).as_numpy_iterator()):
    request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
    assert request.model_spec.signature_name == "serving_default", request.model_spec
    inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
    results[f"warmup_input{i}"] = inputs["images"]
    results[f"warmup_output{i}"] = signature(**{k: tf.constant(v) for k, v in inputs.items()})[
        "embeddings"].numpy()
np.savez(out_path, **results)
"""


@pytest.fixture(scope="module")
def served(exported, tmp_path_factory):
    """What the stand-in server process returned for a row body, a columnar body and the warm-up."""
    _, _, version, images = exported
    client = _load_client("client_rest")
    folder = tmp_path_factory.mktemp("served")
    bodies = []
    for columnar in (False, True):
        bodies.append(folder / f"body_{columnar}.json")
        bodies[-1].write_bytes(client.build_request_body(images, columnar=columnar))
    warmup = version / "assets.extra" / serving.WARMUP_FILE
    _run([sys.executable, "-c", SERVE, str(version), str(warmup), str(folder / "out.npz"),
          *map(str, bodies)])
    return dict(np.load(folder / "out.npz"))


@pytest.mark.parametrize("columnar", [False, True])
def test_rest_body_row_and_columnar_decode_and_run_in_another_process(exported, served, columnar):
    model, _, _, images = exported
    response = {"predictions": served[f"rest{int(columnar)}"].tolist()}
    np.testing.assert_allclose(serving.rest_response_embeddings(response),
                               keras_ssl.evaluate.embed(model, images), rtol=1e-5, atol=1e-5)


def test_every_export_carries_warmup_requests_the_signature_accepts(exported, served):
    model, base, version, _ = exported
    warmup = version / "assets.extra" / serving.WARMUP_FILE
    assert warmup.is_file() and warmup.stat().st_size > 0
    requests = serving.read_warmup_requests(version)
    assert [r.model_spec.name for r in requests] == ["simclr"] * len(serving.WARMUP_BATCH_SIZES)
    assert [r.inputs["images"].tensor_shape.dim[0].size for r in requests] == list(
        serving.WARMUP_BATCH_SIZES)
    assert all(r.inputs["images"].dtype == tf.uint8.as_datatype_enum for r in requests)
    for i, size in enumerate(serving.WARMUP_BATCH_SIZES):
        inputs = served[f"warmup_input{i}"]
        assert inputs.shape == (size, 16, 16, 1) and inputs.dtype == np.uint8
        assert inputs.std() > 0  # real pixels, not an empty tensor
        np.testing.assert_allclose(served[f"warmup_output{i}"],
                                   keras_ssl.evaluate.embed(model, inputs), rtol=1e-5, atol=1e-5)


def test_vector_encoder_warmup_uses_the_features_input(tmp_path):
    version = keras_ssl.export_encoder(encoders.MLP(6, hidden=(8,), output_dim=4), tmp_path / "v")
    requests = serving.read_warmup_requests(version)
    assert all(list(r.inputs) == ["features"] for r in requests)
    assert requests[0].inputs["features"].dtype == tf.float32.as_datatype_enum


def test_text_encoder_warmup_sends_sentences_the_signature_accepts(tmp_path):
    data = keras_ssl.data.text.load("pydoc", vocab_size=200, sequence_length=16, max_examples=32)
    encoder = encoders.TransformerEncoder(data.vocab_size, 16, embed_dim=8, num_heads=2,
                                          num_layers=1, ff_dim=16)
    model = keras_ssl.MaskedLanguageModel(encoder, data.vocab_size, vectorizer=data.vectorizer)
    version = keras_ssl.export_encoder(model, tmp_path / "mlm")
    signature = tf.saved_model.load(str(version)).signatures["serving_default"]
    for request in serving.read_warmup_requests(version):
        (name, proto), = request.inputs.items()
        sentences = tf.make_ndarray(proto)
        assert name == "text" and proto.dtype == tf.string.as_datatype_enum
        assert all(len(s.split()) == 12 for s in sentences)  # real sentences, not empty strings
        out = signature(**{name: tf.constant(sentences)})["embeddings"].numpy()
        assert out.shape == (len(sentences), model.feature_dim) and np.isfinite(out).all()


def test_models_config_parses_as_a_model_server_config(exported, tmp_path):
    _, base, _, _ = exported
    other = keras_ssl.export_encoder(encoders.MLP(4, hidden=(8,), output_dim=4), tmp_path / "mlp")
    path = serving.write_models_config(
        {"simclr": base, "mlp": other.parent, "moco": "/models/moco"}, tmp_path / "models.config"
    )
    config = text_format.Parse(path.read_text(), model_server_config_pb2.ModelServerConfig())
    entries = {c.name: c for c in config.model_config_list.config}
    assert list(entries) == ["simclr", "mlp", "moco"]
    assert entries["simclr"].base_path == str(base)
    assert entries["moco"].base_path == "/models/moco"  # a path inside the server's container
    assert {c.model_platform for c in entries.values()} == {"tensorflow"}


@pytest.mark.parametrize(
    "models, message",
    [
        ({}, "at least one"),
        ({"my model": "/models/x"}, "not usable in a TF Serving URL"),
        ("VERSION", "holds no integer version folders"),
    ],
)
def test_models_config_errors_say_how_to_fix(exported, tmp_path, models, message):
    if models == "VERSION":  # a version folder given where the model folder belongs
        models = {"simclr": exported[2]}
    with pytest.raises(KerasSSLError, match=message):
        serving.write_models_config(models, tmp_path / "models.config")


class _FakeRestServer(BaseHTTPRequestHandler):
    """Answers `POST /v1/models/<name>:predict` as TF Serving would, with a SavedModel signature."""

    signature = None
    paths = []

    def do_POST(self):  # noqa: N802 - the http.server hook name
        type(self).paths.append(self.path)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        images = tf.constant(np.asarray(body["instances"]), dtype=tf.uint8)
        out = type(self).signature(images=images)["embeddings"].numpy()
        payload = json.dumps({"predictions": out.tolist()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


def test_rest_client_against_a_fake_server_prints_embeddings(exported, capsys):
    model, _, version, _ = exported
    client = _load_client("client_rest")
    _FakeRestServer.signature = tf.saved_model.load(str(version)).signatures["serving_default"]
    server = HTTPServer(("127.0.0.1", 0), _FakeRestServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    images = np.random.default_rng(2).integers(0, 256, (2, 16, 16, 1), dtype=np.uint8)
    try:
        url = client.predict_url(f"127.0.0.1:{server.server_port}", "simclr", version=1)
        embeddings = client.predict(url, client.build_request_body(images))
    finally:
        server.shutdown()
    assert _FakeRestServer.paths == ["/v1/models/simclr/versions/1:predict"]
    np.testing.assert_allclose(embeddings, keras_ssl.evaluate.embed(model, images), atol=1e-5)


def test_rest_client_without_a_server_says_how_to_start_one(capsys):
    client = _load_client("client_rest")
    code = client.main(["--server", "127.0.0.1:9", "--count", "1"])
    assert code == 1 and "README.md" in capsys.readouterr().err


def test_grpc_client_against_a_fake_prediction_service(exported):
    from concurrent import futures

    import grpc  # installed with tensorflow-serving-api, a dependency
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    model, _, version, _ = exported
    client = _load_client("client_grpc")
    signature = tf.saved_model.load(str(version)).signatures["serving_default"]
    seen = []

    class Service(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):  # noqa: N802 - the gRPC method name
            seen.append((request.model_spec.name, request.model_spec.signature_name))
            images = tf.constant(tf.make_ndarray(request.inputs["images"]))
            response = predict_pb2.PredictResponse()
            response.outputs["embeddings"].CopyFrom(
                tf.make_tensor_proto(signature(images=images)["embeddings"].numpy()))
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Service(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    images = np.random.default_rng(3).integers(0, 256, (2, 16, 16, 1), dtype=np.uint8)
    try:
        embeddings = client.predict(f"127.0.0.1:{port}", client.build_request(images, "simclr"))
    finally:
        server.stop(None)
    assert seen == [("simclr", "serving_default")]
    np.testing.assert_allclose(embeddings, keras_ssl.evaluate.embed(model, images), atol=1e-5)


def test_rest_body_rejects_an_unbatched_image():
    with pytest.raises(KerasSSLError, match="add a batch axis"):
        serving.rest_request_body(np.zeros((16,), "uint8"))
