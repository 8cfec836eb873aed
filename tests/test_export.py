"""Export: TF Serving layout, named signature checked from another process, load back, fine-tune."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_ssl
from keras_ssl import encoders
from keras_ssl.errors import KerasSSLError


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return keras_ssl.SimCLR(encoders.ConvNet((16, 16, 1), width=4), projection_dim=8)


def test_versions_are_integer_folders_with_a_named_signature(model, tmp_path):
    first = keras_ssl.export_encoder(model, tmp_path / "simclr")
    second = keras_ssl.export_encoder(model, tmp_path / "simclr")
    assert (first.name, second.name) == ("1", "2")
    assert sorted(os.listdir(tmp_path / "simclr")) == ["1", "2"]  # no temporary folder left
    assert (first / "saved_model.pb").exists() and (first / "variables").is_dir()
    meta = json.loads((first / "assets.extra" / "export.json").read_text())
    assert meta["input_name"] == "images" and meta["embedding_dim"] == model.feature_dim


def test_signature_seen_from_a_separate_process(model, tmp_path, textured_images):
    version = keras_ssl.export_encoder(model, tmp_path / "m")
    images = textured_images(5, size=16)
    expected = keras_ssl.evaluate.embed(model, images)
    np.save(tmp_path / "images.npy", images)
    show = subprocess.run(
        ["saved_model_cli", "show", "--dir", str(version), "--tag_set", "serve",
         "--signature_def", "serving_default"],
        capture_output=True, text=True,
    )
    if show.returncode == 0:  # the console script is on PATH where TF is installed
        assert "inputs['images']" in show.stdout and "DT_UINT8" in show.stdout
        assert "outputs['embeddings']" in show.stdout and "(-1, 16, 16, 1)" in show.stdout
    script = (
        "import sys, numpy as np, tensorflow as tf\n"
        "sig = tf.saved_model.load(sys.argv[1]).signatures['serving_default']\n"
        "print(sig.structured_input_signature, sig.structured_outputs, file=sys.stderr)\n"
        "out = sig(images=tf.constant(np.load(sys.argv[2])))['embeddings']\n"
        "assert out.dtype == tf.float32\n"
        "np.save(sys.argv[3], out.numpy())\n"
    )
    subprocess.run([sys.executable, "-c", script, str(version), str(tmp_path / "images.npy"),
                    str(tmp_path / "out.npy")], check=True, capture_output=True)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, rtol=1e-5, atol=1e-5)


def test_export_path_that_is_a_file_is_refused_and_left_alone(model, tmp_path):
    target = tmp_path / "file"
    target.write_text("keep me")
    with pytest.raises(KerasSSLError, match="existing file"):
        keras_ssl.export_encoder(model, target)
    assert target.read_text() == "keep me"


def test_existing_version_is_never_overwritten(model, tmp_path):
    keras_ssl.export_encoder(model, tmp_path / "m", version=3)
    stamp = (tmp_path / "m" / "3" / "saved_model.pb").stat().st_mtime_ns
    with pytest.raises(KerasSSLError, match="never overwritten"):
        keras_ssl.export_encoder(model, tmp_path / "m", version=3)
    assert (tmp_path / "m" / "3" / "saved_model.pb").stat().st_mtime_ns == stamp


def test_failed_export_leaves_no_partial_version(model, tmp_path, monkeypatch):
    from keras_ssl import export

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(export, "validate_export", broken)
    with pytest.raises(RuntimeError):
        keras_ssl.export_encoder(model, tmp_path / "m")
    assert os.listdir(tmp_path / "m") == []


def test_frozen_encoder_in_a_classifier_keeps_its_weights(model, tmp_path, textured_images):
    keras_ssl.export_encoder(model, tmp_path / "m")
    encoder = keras_ssl.load_encoder(tmp_path / "m")
    images = textured_images(16, size=16)
    np.testing.assert_allclose(
        encoder.predict(images, verbose=0), keras_ssl.evaluate.embed(model, images), atol=1e-5
    )
    classifier = _classifier(encoder)
    before = [w.copy() for w in encoder.get_weights()]
    classifier.fit(images, np.arange(16) % 2, epochs=2, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, encoder.get_weights(), strict=True))


def test_fine_tuning_changes_encoder_weights(model, tmp_path, textured_images):
    keras_ssl.export_encoder(model, tmp_path / "m")
    encoder = keras_ssl.load_encoder(tmp_path / "m", trainable=True)
    classifier = _classifier(encoder)
    kernel = encoder.get_layer(model.encoder.name).get_layer("block1_a_conv").kernel
    before = kernel.numpy().copy()
    classifier.fit(textured_images(16, size=16), np.arange(16) % 2, epochs=2, verbose=0)
    assert not np.allclose(before, kernel.numpy())


def test_bare_savedmodel_loads_frozen_and_refuses_fine_tuning(model, tmp_path, textured_images):
    version = keras_ssl.export_encoder(model, tmp_path / "m")
    (version / "assets.extra" / "encoder.keras").unlink()
    frozen = keras_ssl.load_encoder(version)
    images = textured_images(4, size=16)
    np.testing.assert_allclose(frozen(images), keras_ssl.evaluate.embed(model, images), atol=1e-5)
    with pytest.raises(KerasSSLError, match="cannot be fine-tuned"):
        keras_ssl.load_encoder(version, trainable=True)


def test_vector_encoder_exports_a_features_signature(tmp_path):
    version = keras_ssl.export_encoder(encoders.MLP(6, hidden=(8,), output_dim=4), tmp_path / "v")
    signature = tf.saved_model.load(str(version)).signatures["serving_default"]
    spec = signature.structured_input_signature[1]["features"]
    assert spec.dtype == tf.float32 and spec.shape.as_list() == [None, 6]


def test_load_encoder_errors(tmp_path):
    with pytest.raises(KerasSSLError, match="no such folder"):
        keras_ssl.load_encoder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(KerasSSLError, match="no version folders"):
        keras_ssl.load_encoder(tmp_path / "empty")


def _classifier(encoder):
    inputs = keras.Input(encoder.input_shape[1:], dtype="uint8")
    classifier = keras.Model(inputs, keras.layers.Dense(2)(encoder(inputs)))
    classifier.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return classifier
