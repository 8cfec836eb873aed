import numpy as np
import pytest

from keras_ssl import defaults, encoders
from keras_ssl.errors import KerasSSLError


@pytest.mark.parametrize(
    "depth, small, params_min",
    [(18, True, 11_000_000), (50, False, 23_000_000)],
)
def test_resnet_matches_the_paper_sizes(depth, small, params_min):
    model = encoders.ResNet(depth, input_shape=(32, 32, 3), small_images=small)
    assert model.output_shape == (None, 2048 if depth == 50 else 512)
    assert model.count_params() > params_min  # ResNet-18 ~11.2M, ResNet-50 ~23.5M without the fc


def test_small_image_stem_keeps_resolution():
    small = encoders.ResNet(18, (32, 32, 3), small_images=True, width=8)
    large = encoders.ResNet(18, (32, 32, 3), small_images=False, width=8)
    assert small.get_layer("stem_conv").output.shape[1] == 32
    assert large.get_layer("stem_pool").output.shape[1] == 8
    assert small.get_layer("stem_conv").kernel.shape[:2] == (3, 3)


def test_convnet_and_mlp_produce_vectors():
    images = np.random.default_rng(0).random((4, 28, 28, 1)).astype("float32")
    assert encoders.ConvNet((28, 28, 1), width=8)(images).shape == (4, 32)
    assert encoders.MLP(64, hidden=(32,), output_dim=16)(np.zeros((3, 64), "float32")).shape == (3, 16)


def test_build_by_name_and_default_for_input():
    assert encoders.build("resnet18", (32, 32, 3), width=8).name == "resnet18"
    assert defaults.choose((32, 32, 1)).build_encoder((32, 32, 1)).name == "convnet"
    assert defaults.choose((96, 96, 3)).build_encoder((96, 96, 3)).name == "resnet18"
    assert defaults.choose((20,)).build_encoder((20,)).name == "mlp"


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: encoders.ResNet(20), "18, 34, 50"),
        (lambda: encoders.ConvNet((32, 32, 4)), "1 or 3 channels"),
        (lambda: encoders.build("vgg", (32, 32, 3)), "Unknown encoder"),
        (lambda: encoders.build("mlp", (32, 32, 3)), "takes feature vectors"),
        (lambda: encoders.build("convnet", (64,)), "Use --encoder mlp"),
    ],
)
def test_bad_encoder_settings_raise_clear_errors(call, message):
    with pytest.raises(KerasSSLError, match=message):
        call()
