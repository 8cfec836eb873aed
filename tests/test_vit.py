"""The ViT encoder and the keras.applications backbones as registered encoders."""

import keras
import numpy as np
import pytest

from keras_ssl import encoders
from keras_ssl.encoders.vit import PatchEmbedding, ViT, ViTTransformer, default_patch_size
from keras_ssl.errors import KerasSSLError


def _tiny(**kwargs):
    return ViT((16, 16, 1), hidden_dim=8, num_layers=1, num_heads=2, mlp_dim=16, **kwargs)


def test_patch_size_follows_the_image_size_and_must_tile_it():
    assert default_patch_size(32) == 4 and default_patch_size(96) == 8
    assert encoders.build("vit_tiny", (32, 32, 3)).get_layer("patch_embedding").num_patches == 64
    small = encoders.build("vit_small", (96, 96, 3))
    assert small.get_layer("patch_embedding").num_patches == 144 and small.output_shape == (None, 192)
    with pytest.raises(KerasSSLError, match="must divide"):
        ViT((30, 30, 3))
    with pytest.raises(KerasSSLError, match="multiple of its attention heads"):
        ViT((16, 16, 1), hidden_dim=10, num_heads=3)


def test_registered_for_images_only_and_width_option():
    assert {"vit_tiny", "vit_small"} <= set(encoders.names("images"))
    assert encoders.build("vit_tiny", (16, 16, 1), width=12).output_shape == (None, 12)
    with pytest.raises(KerasSSLError, match="takes images"):
        encoders.build("vit_tiny", (10,))


def test_transformer_takes_any_number_of_tokens_and_pooling_choices():
    model = _tiny()
    transformer = model.get_layer("transformer")
    assert isinstance(transformer, ViTTransformer)
    assert isinstance(model.get_layer("patch_embedding"), PatchEmbedding)
    assert transformer(np.zeros((2, 5, 8), "float32")).shape == (2, 6, 8)  # [CLS] + 5
    x = np.random.default_rng(0).uniform(size=(2, 16, 16, 1)).astype("float32")
    tokens = transformer(model.get_layer("patch_embedding")(x))
    np.testing.assert_allclose(model(x), tokens[:, 1:].numpy().mean(1), rtol=1e-5, atol=1e-6)
    cls = _tiny(pooling="cls")
    cls.set_weights(model.get_weights())
    np.testing.assert_allclose(cls(x), tokens[:, 0], rtol=1e-5, atol=1e-6)
    with pytest.raises(KerasSSLError, match="pooling"):
        _tiny(pooling="max")


def test_saves_loads_and_clones(tmp_path):
    model = _tiny()
    x = np.random.default_rng(0).uniform(size=(2, 16, 16, 1)).astype("float32")
    model.save(tmp_path / "vit.keras")
    loaded = keras.saving.load_model(tmp_path / "vit.keras")
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-6)
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone(x), model(x), rtol=1e-6)


def test_mobilenet_application_from_a_local_weights_file(tmp_path):
    encoder = encoders.build("mobilenet_v3_small", (32, 32, 1))
    assert encoder.output_shape == (None, 576)
    x = np.random.default_rng(0).uniform(size=(2, 32, 32, 1)).astype("float32")
    assert encoder(x).shape == (2, 576)
    path = tmp_path / "mobilenet.weights.h5"
    encoder.layers[-1].save_weights(path)  # the application itself, without the input layer
    loaded = encoders.build("mobilenet_v3_small", (32, 32, 1), weights=str(path))
    np.testing.assert_allclose(loaded(x), encoder(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(KerasSSLError, match="does not exist"):
        encoders.build("mobilenet_v3_small", (32, 32, 3), weights=str(tmp_path / "missing.h5"))
    with pytest.raises(KerasSSLError, match="at least 32"):
        encoders.build("mobilenet_v3_small", (16, 16, 3))


def test_caffe_preprocessing_matches_keras_applications():
    from keras.applications import resnet50

    from keras_ssl.encoders.applications import ApplicationInputs

    x = np.random.default_rng(0).uniform(size=(2, 8, 8, 3)).astype("float32")
    expected = resnet50.preprocess_input(x * 255.0)
    np.testing.assert_allclose(ApplicationInputs("caffe")(x), expected, rtol=1e-5, atol=1e-3)
    assert ApplicationInputs("raw")(x[..., :1]).shape == (2, 8, 8, 3)


@pytest.mark.slow
@pytest.mark.parametrize("name, dim", [("resnet50_keras", 2048), ("efficientnet_b0", 1280),
                                       ("convnext_tiny", 768)])
def test_other_applications_build(name, dim):
    encoder = encoders.build(name, (32, 32, 3))
    assert encoder.output_shape == (None, dim)
    assert encoder(np.zeros((1, 32, 32, 3), "float32")).shape == (1, dim)
