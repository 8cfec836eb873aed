"""Feature vectors end to end: data sources, vector methods training and export, clear errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_ssl
from keras_ssl import augment, data, encoders, evaluate
from keras_ssl.cli import main
from keras_ssl.errors import KerasSSLError


@pytest.fixture(scope="module")
def digits_vectors():
    return data.load("digits_vectors")


def _knn(model, d):
    train = evaluate.embed(model, d.x_train)
    test = evaluate.embed(model, d.x_test)
    return evaluate.knn_accuracy(train, d.y_train, test, d.y_test)


def test_digits_as_64_dim_vectors(digits_vectors):
    d = digits_vectors
    images = data.load("digits")
    assert d.kind == "vectors" and d.input_shape == (64,)
    assert d.x_train.dtype == np.float32 and d.x_train.shape == (1437, 64)
    assert d.x_test.shape == (360, 64) and d.num_classes == 10
    assert d.x_train.min() >= 0.0 and d.x_train.max() == 1.0
    # The same split as the images: same labels in the same order.
    np.testing.assert_array_equal(d.y_train, images.y_train)
    batch = next(iter(d.train_dataset(32)))
    assert batch.shape == (32, 64) and batch.dtype == tf.float32
    with pytest.raises(KerasSSLError, match="image_size applies to images"):
        data.load("digits_vectors", image_size=16)


def test_rank_2_npz_and_arrays_load_as_vectors(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((50, 7)), rng.integers(0, 3, 50)
    np.savez(tmp_path / "rows.npz", x=x, y=y)
    from_file = data.load(str(tmp_path / "rows.npz"))
    from_arrays = data.load((x, y))
    for d in (from_file, from_arrays):
        assert d.kind == "vectors" and d.x_train.dtype == np.float32
        assert len(d.x_train) + len(d.x_test) == 50 and d.input_shape == (7,)
    # Negative values and values above 1 are features, not pixels: kept as they are.
    assert from_arrays.x_train.min() < 0 and from_arrays.x_train.max() > 1


@pytest.mark.parametrize("method", ["simclr", "autoencoder"])
def test_vector_methods_beat_their_random_init_knn(digits_vectors, method):
    keras.utils.set_random_seed(0)
    encoder = encoders.MLP(64, hidden=(128,), output_dim=64)
    cls, preset = keras_ssl.methods.get_method(method)
    model = cls(encoder, seed=0, **preset)
    before = _knn(model, digits_vectors)
    model.compile(optimizer=keras_ssl.training.default_optimizer(2e-3, 5 * 40))
    model.fit(digits_vectors.train_dataset(256), epochs=40, verbose=0)
    after = _knn(model, digits_vectors)
    assert after > before + 0.005, (before, after)


def test_vector_simclr_compiles_with_xla_and_exports_features(digits_vectors, tmp_path):
    model = keras_ssl.SimCLR(encoders.MLP(64, hidden=(32,), output_dim=16), projection_dim=8,
                             seed=0)
    model.compile(optimizer="adam", jit_compile=True)
    model.fit(digits_vectors.train_dataset(64).take(2), epochs=1, verbose=0)
    assert model.jit_compile is True
    version = keras_ssl.export_encoder(model, tmp_path / "vectors")
    signature = tf.saved_model.load(str(version)).signatures["serving_default"]
    spec = signature.structured_input_signature[1]["features"]
    assert spec.dtype == tf.float32 and spec.shape.as_list() == [None, 64]
    rows = digits_vectors.x_test[:5]
    served = signature(features=tf.constant(rows))["embeddings"].numpy()
    np.testing.assert_allclose(served, model(rows).numpy(), rtol=1e-4, atol=1e-5)


def test_cli_pretrains_on_a_vector_npz_and_exports(tmp_path, capsys):
    d = data.load("digits_vectors")
    path = tmp_path / "rows.npz"
    np.savez(path, x=d.x_train, y=d.y_train, x_test=d.x_test, y_test=d.y_test)
    code = main(["pretrain", "--method", "simclr", "--data", str(path), "--epochs", "1",
                 "--batch-size", "128", "--export", str(tmp_path / "out"), "--verbose", "0"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "mlp" in out and "kNN accuracy" in out and "features float32" in out
    signature = tf.saved_model.load(str(tmp_path / "out" / "1")).signatures["serving_default"]
    assert signature.structured_input_signature[1]["features"].dtype == tf.float32


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "rotnet", "--data", "digits_vectors"], "learns from images"),
        (["--method", "jigsaw", "--data", "digits_vectors"], "learns from images"),
        (["--method", "simclr", "--data", "digits_vectors", "--encoder", "convnet"],
         "takes images"),
        (["--method", "mlm", "--data", "digits_vectors"], "holds vectors, not text"),
    ],
)
def test_cli_image_only_methods_given_vectors_say_so(args, message, capsys):
    assert main(["pretrain", *args, "--epochs", "0", "--verbose", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("keras-ssl: error:") and message in err and "\n" not in err


def test_image_only_methods_and_layers_given_vectors_say_so():
    vectors = np.random.default_rng(0).random((8, 64)).astype("float32")
    for cls in (keras_ssl.RotNet, keras_ssl.Jigsaw):
        with pytest.raises(KerasSSLError, match="images"):
            cls(encoders.MLP(64))
    rotnet = keras_ssl.RotNet(encoders.ConvNet((16, 16, 1), width=4))
    rotnet.compile(optimizer="adam")
    with pytest.raises(KerasSSLError, match="look like feature vectors"):
        rotnet.fit(vectors, batch_size=4, verbose=0)
    # An image augmenter on vectors: the message points to the vector augmentations.
    simclr = keras_ssl.SimCLR(encoders.MLP(64), augmenter=augment.simclr((32, 32)))
    simclr.compile(optimizer="adam")
    with pytest.raises(KerasSSLError, match="augment.vectors"):
        simclr.fit(vectors, batch_size=4, verbose=0)
