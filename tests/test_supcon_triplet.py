"""SupCon and Triplet: label-driven methods; fit, XLA, labels required, export, metric reference."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_ssl
from keras_ssl import encoders, xla
from keras_ssl.cli import main
from keras_ssl.errors import KerasSSLError
from keras_ssl.methods.triplet import hardest_triplet_accuracy


def _model(cls, **kwargs):
    keras.utils.set_random_seed(1)
    head = {"projection_dim": 16} if cls is keras_ssl.SupCon else {"embedding_dim": 16}
    return cls(encoders.ConvNet((16, 16, 1), width=4), seed=1, **{**head, **kwargs})


@pytest.fixture(scope="module")
def digits():
    """128 digits at 16 px with their labels: classes that views and labels can agree on."""
    data = keras_ssl.data.load("digits")
    images = keras_ssl.augment.Resize(16, 16)(data.x_train[:128]).numpy()
    return (images * 255).round().astype("uint8"), data.y_train[:128]


@pytest.mark.parametrize("cls", [keras_ssl.SupCon, keras_ssl.Triplet])
def test_loss_falls_on_a_fixed_batch(cls, digits):
    images, labels = digits
    model = _model(cls)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = model.fit(images[:64], labels[:64], batch_size=64, epochs=15, verbose=0)
    losses = history.history["loss"]
    drop = 0.5 if cls is keras_ssl.SupCon else 0.05  # triplet losses live on the margin's scale
    assert losses[-1] < losses[0] - drop, losses
    if cls is keras_ssl.Triplet:
        assert all(0.0 <= a <= 1.0 for a in history.history["triplet_accuracy"])


@pytest.mark.parametrize("cls", [keras_ssl.SupCon, keras_ssl.Triplet])
def test_data_without_labels_fails_before_training(cls, digits):
    model = _model(cls)
    model.compile(optimizer="adam")
    weights = [w.numpy() for w in model.trainable_weights]
    with pytest.raises(KerasSSLError, match="needs class labels.*labels=True"):
        model.fit(digits[0][:16], batch_size=8, epochs=1, verbose=0)
    for w, before in zip(model.trainable_weights, weights, strict=True):
        np.testing.assert_array_equal(w.numpy(), before)


@pytest.mark.parametrize("method", ["supcon", "triplet"])
def test_cli_refuses_unlabelled_data(method, tmp_path, capsys):
    path = tmp_path / "unlabelled.npz"
    np.savez(path, x=np.zeros((16, 16, 16, 1), "uint8"))
    assert main(["pretrain", "--method", method, "--data", str(path), "--verbose", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("keras-ssl: error:") and "needs class labels" in err and "\n" not in err


@pytest.mark.parametrize("cls", [keras_ssl.SupCon, keras_ssl.Triplet])
def test_vectors_train_with_an_mlp_under_xla(cls):
    # The step compiles with XLA; vectors keep the graph (and the compile time) small, the image
    # augmenters are compiled in MoCo's and the augmentation tests.
    keras.utils.set_random_seed(0)
    model = cls(encoders.MLP(10, hidden=(16,), output_dim=8))
    model.compile(optimizer="adam", jit_compile=True)
    assert model.jit_compile is True
    x = np.random.default_rng(0).random((32, 10), "float32")
    labels = np.arange(32).reshape(32, 1) % 4  # [N, 1] labels are accepted too
    history = model.fit(x, labels, batch_size=16, epochs=2, verbose=0)
    assert model.jit_compile is True  # Keras silently falls back when a layer cannot compile
    assert xla.xla_compiled(model)  # the traced step is marked for XLA
    assert np.isfinite(history.history["loss"]).all()


def test_export_load_encoder_and_keras_file(tmp_path, digits):
    images, labels = digits
    model = _model(keras_ssl.SupCon, temperature=0.2)
    model.compile(optimizer="adam")
    dataset = tf.data.Dataset.from_tensor_slices((images[:16], labels[:16])).batch(8)
    model.fit(dataset, epochs=1, verbose=0, shuffle=False)  # a tf.data pipeline of (x, y)
    expected = keras_ssl.evaluate.embed(model, images[:8])
    keras_ssl.export_encoder(model, tmp_path / "supcon")
    loaded = keras_ssl.load_encoder(tmp_path / "supcon")
    np.testing.assert_allclose(loaded.predict(images[:8], verbose=0), expected, atol=1e-5)

    model.save(tmp_path / "supcon.keras")
    restored = keras.saving.load_model(tmp_path / "supcon.keras")
    assert isinstance(restored, keras_ssl.SupCon) and restored.temperature == 0.2
    np.testing.assert_allclose(keras_ssl.evaluate.embed(restored, images[:8]), expected, atol=1e-5)


def test_triplet_config_round_trip_and_features_without_a_head(digits):
    model = _model(keras_ssl.Triplet, margin=0.3, mining="semi_hard")
    clone = keras_ssl.Triplet.from_config(model.get_config())
    assert (clone.margin, clone.mining, clone.embedding_dim) == (0.3, "semi_hard", 16)

    bare = _model(keras_ssl.Triplet, embedding_dim=None, mining="batch_all")
    assert bare.projector is None
    bare.compile(optimizer="adam")
    results = bare.evaluate(digits[0][:32], digits[1][:32], batch_size=32, verbose=0,
                            return_dict=True)
    features = bare.encoder(bare.preprocess(digits[0][:32]), training=False)
    expected = keras_ssl.losses.triplet_loss(features, digits[1][:32], 0.2, "batch_all")
    np.testing.assert_allclose(results["loss"], float(expected), rtol=1e-4)  # no augmentation


def _hardest_accuracy_reference(e, labels):
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    d = np.linalg.norm(e[:, None] - e[None], axis=-1)
    hits = valid = 0
    for a in range(len(e)):
        pos = [d[a, p] for p in range(len(e)) if p != a and labels[p] == labels[a]]
        neg = [d[a, n] for n in range(len(e)) if labels[n] != labels[a]]
        if pos and neg:
            valid += 1
            hits += max(pos) < min(neg)
    return hits / valid if valid else 0.0


def test_triplet_accuracy_matches_a_numpy_reference():
    rng = np.random.default_rng(0)
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3])  # class 3 has no positive: ignored
    for scale in (0.1, 1.0, 5.0):  # from overlapping classes to well separated ones
        centres = rng.normal(size=(4, 6))
        e = (scale * centres[labels] + 0.3 * rng.normal(size=(9, 6))).astype("float32")
        got = float(hardest_triplet_accuracy(e, labels))
        assert got == pytest.approx(_hardest_accuracy_reference(e, labels), abs=1e-6)
    assert float(hardest_triplet_accuracy(np.eye(3, dtype="float32"), np.arange(3))) == 0.0


@pytest.mark.parametrize(
    "cls, settings, message",
    [
        (keras_ssl.SupCon, {"temperature": -1.0}, "temperature"),
        (keras_ssl.Triplet, {"mining": "hardest"}, "Unknown triplet mining"),
        (keras_ssl.Triplet, {"margin": -0.1}, "margin"),
        (keras_ssl.Triplet, {"embedding_dim": 0}, "embedding_dim"),
    ],
)
def test_bad_settings_raise_clear_errors(cls, settings, message):
    with pytest.raises(KerasSSLError, match=message):
        _model(cls, **settings)
