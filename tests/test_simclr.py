"""SimCLR as a keras.Model: fit, compile with XLA, configs, and the checks before training."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_ssl
from keras_ssl import encoders
from keras_ssl.errors import KerasSSLError


def _model(**kwargs):
    keras.utils.set_random_seed(1)
    return keras_ssl.SimCLR(encoders.ConvNet((16, 16, 1), width=8), projection_dim=16, seed=1,
                            **kwargs)


def test_loss_falls_on_a_fixed_batch(textured_images):
    # Weak views of noise images: the network can learn to match them within a few steps.
    model = _model(augmenter=keras_ssl.augment.weak(16, seed=1))
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    images = textured_images(32, size=16)
    history = model.fit(images, batch_size=32, epochs=20, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0] - 0.2, losses
    assert 0.0 <= history.history["contrastive_accuracy"][-1] <= 1.0


@pytest.mark.slow  # tests/test_xla.py checks every method compiles; this one trains longer
def test_train_step_really_runs_under_xla(textured_images):
    model = _model()
    model.compile(optimizer="adam", jit_compile=True)
    assert model.jit_compile is True  # Keras drops it silently for layers that cannot compile
    model.fit(textured_images(16, size=16), batch_size=8, epochs=1, verbose=0)
    assert model.jit_compile is True


def test_labels_are_accepted_and_ignored(textured_images):
    model = _model()
    model.compile(optimizer="adam")
    dataset = tf.data.Dataset.from_tensor_slices(
        (textured_images(16, size=16), np.arange(16))
    ).batch(8, drop_remainder=True)
    model.fit(dataset, epochs=1, verbose=0)
    results = model.evaluate(dataset, verbose=0, return_dict=True)
    assert set(results) == {"loss", "contrastive_accuracy"} and np.isfinite(results["loss"])


def test_embeddings_come_from_the_encoder(textured_images):
    model = _model()
    embeddings = model.predict(textured_images(4, size=16), verbose=0)
    assert embeddings.shape == (4, model.feature_dim)


def test_config_round_trip_keeps_settings_and_weights(tmp_path, textured_images):
    model = _model(temperature=0.2)
    model.compile(optimizer="adam")
    model.fit(textured_images(8, size=16), batch_size=8, epochs=1, verbose=0)
    clone = keras_ssl.SimCLR.from_config(model.get_config())
    assert clone.temperature == 0.2 and clone.projection_dim == 16
    path = tmp_path / "simclr.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    images = textured_images(4, size=16)
    np.testing.assert_allclose(restored.predict(images, verbose=0), model.predict(images, verbose=0),
                               atol=1e-5)


def test_vectors_train_with_an_mlp():
    keras.utils.set_random_seed(0)
    model = keras_ssl.SimCLR(encoders.MLP(10, hidden=(16,), output_dim=8), projection_dim=8)
    model.compile(optimizer="adam")
    history = model.fit(np.random.default_rng(0).random((32, 10), "float32"), batch_size=16,
                        epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


@pytest.mark.parametrize(
    "data, message",
    [
        (np.zeros((1, 16, 16, 1), "uint8"), "at least 2"),
        (np.zeros((4, 16, 16, 3), "uint8"), "1-channel"),
        (np.zeros((4, 16, 16), "uint8"), r"\[N, H, W, C\]"),
    ],
)
def test_bad_batches_fail_before_training(data, message):
    model = _model()
    model.compile(optimizer="adam")
    with pytest.raises(KerasSSLError, match=message):
        model.fit(data, batch_size=len(data), epochs=1, verbose=0)


def test_bad_settings_raise_clear_errors():
    with pytest.raises(KerasSSLError, match="temperature"):
        _model(temperature=0.0)
    with pytest.raises(KerasSSLError, match="keras.Model"):
        keras_ssl.SimCLR("resnet")
