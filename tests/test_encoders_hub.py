"""keras-hub backbones as encoders, and encoders that start from a weights file (CLI and API)."""

import sys

import keras
import keras_hub
import numpy as np
import pytest

import keras_ssl
from keras_ssl import cli, encoders
from keras_ssl.encoders.hub import HubInputs
from keras_ssl.errors import KerasSSLError


def test_hub_backbones_take_images_in_0_1_and_pool_to_vectors():
    resnet = encoders.build("hub_resnet18", (32, 32, 1))
    assert resnet.output_shape == (None, 512)
    assert any(isinstance(layer, keras_hub.models.ResNetBackbone) for layer in resnet.layers)
    vit = encoders.build("hub_vit_tiny", (32, 32, 3))
    assert vit.output_shape == (None, 192)
    backbone = next(layer for layer in vit.layers
                    if isinstance(layer, keras_hub.models.ViTBackbone))
    assert tuple(backbone.patch_size) == (4, 4)
    images = np.random.default_rng(0).uniform(size=(2, 32, 32, 1)).astype("float32")
    assert np.isfinite(resnet(images).numpy()).all()
    # ImageNet normalisation of keras-hub's converters: mid-gray pixels of every channel.
    normalised = HubInputs()(np.full((1, 2, 2, 1), 0.5, "float32")).numpy()[0, 0, 0]
    np.testing.assert_allclose(normalised, (0.5 - np.array([0.485, 0.456, 0.406]))
                               / np.array([0.229, 0.224, 0.225]), rtol=1e-5)


def test_hub_encoder_continues_from_a_preset_folder_or_a_weights_file(tmp_path):
    encoder = encoders.build("hub_resnet18", (32, 32, 3))
    backbone = next(layer for layer in encoder.layers
                    if isinstance(layer, keras_hub.models.ResNetBackbone))
    backbone.save_to_preset(str(tmp_path / "preset"))
    backbone.save_weights(str(tmp_path / "backbone.weights.h5"))
    images = np.random.default_rng(1).uniform(size=(2, 32, 32, 3)).astype("float32")
    expected = encoder(images).numpy()
    for weights in (tmp_path / "preset", tmp_path / "backbone.weights.h5"):
        loaded = encoders.build("hub_resnet18", (32, 32, 3), weights=weights)
        np.testing.assert_allclose(loaded(images).numpy(), expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(KerasSSLError, match="do not exist"):
        encoders.build("hub_resnet18", (32, 32, 3), weights=tmp_path / "missing")


def test_without_keras_hub_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "keras_hub", None)
    with pytest.raises(KerasSSLError, match=r"pip install 'keras-ssl\[hub\]'"):
        encoders.build("hub_resnet18", (32, 32, 3))


def test_pretrain_and_the_cli_start_a_named_encoder_from_its_weights(tmp_path, capsys):
    start = encoders.build("convnet", (32, 32, 1), width=8)
    start.set_weights([w + 0.01 for w in start.get_weights()])
    path = tmp_path / "start.weights.h5"
    start.save_weights(path)
    result = keras_ssl.pretrain("simclr", "digits", encoder="convnet", width=8,
                                encoder_weights=path, epochs=0, max_examples=64,
                                batch_size=32, evaluate_scores=False, verbose=0, report=False)
    for got, want in zip(result.model.encoder.get_weights(), start.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    assert cli.main(["pretrain", "--data", "digits", "--encoder", "convnet",
                               "--width", "8", "--encoder-weights", str(path), "--epochs", "0",
                               "--max-examples", "64", "--batch-size", "32", "--export", str(tmp_path / "out"),
                               "--verbose", "0"]) in (0, None)
    exported = keras_ssl.load_encoder(tmp_path / "out")
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 1), dtype="uint8")
    np.testing.assert_allclose(np.asarray(exported(images)),
                               start(images.astype("float32") / 255).numpy(), rtol=1e-4,
                               atol=1e-5)
    # A file that does not fit the encoder, and one that is not a weights file.
    with pytest.raises(KerasSSLError, match="does not fit the convnet encoder"):
        keras_ssl.pretrain("simclr", "digits", encoder="convnet", width=16,
                           encoder_weights=path, epochs=0, max_examples=64, batch_size=32,
                           verbose=0, report=False)
    with pytest.raises(KerasSSLError, match="not a .weights.h5 file"):
        encoders.build("convnet", (32, 32, 1), weights=tmp_path / "start.npz")
    capsys.readouterr()


def test_keras_model_encoders_refuse_encoder_weights():
    model = encoders.ConvNet((32, 32, 1), width=8)
    with pytest.raises(KerasSSLError, match="named encoder"):
        keras_ssl.pipeline.build_model("simclr", keras_ssl.data.load("digits", max_examples=32),
                                       encoder=model, encoder_weights="x.weights.h5")
    assert isinstance(model, keras.Model)
