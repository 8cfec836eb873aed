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


def test_shared_weights_at_another_size_or_none_or_why_not_for_a_position_embedding():
    convnet = encoders.ConvNet((32, 32, 3), width=4)
    small = encoders.shared_weights_at(convnet, (16, 16))
    assert small.input_shape == (None, 16, 16, 3)
    assert [id(w) for w in small.weights] == [id(w) for w in convnet.weights]
    image = np.random.default_rng(0).random((1, 16, 16, 3)).astype("float32")
    before = small(image).numpy()
    first = convnet.trainable_weights[0]
    first.assign(first * 2.0)  # a change to the encoder is a change to the view
    assert np.abs(small(image).numpy() - before).max() > 1e-4
    assert encoders.shared_weights_at(
        encoders.ViT((32, 32, 3), hidden_dim=8, num_layers=1, num_heads=2, mlp_dim=8),
        (16, 16)) is None
    assert encoders.shared_weights_at(
        encoders.SeriesTransformer((30, 2), embed_dim=8, num_heads=2, num_layers=1), (10,)) is None
    # Asked for what it is needed for, it says why not instead of None.
    with pytest.raises(KerasSSLError, match="cannot run on 10 segments: its position embedding"):
        encoders.shared_weights_at(
            encoders.SeriesTransformer((30, 2), embed_dim=8, num_heads=2, num_layers=1), (10,),
            needed_for="segments")
    with pytest.raises(KerasSSLError, match="cannot run on 4x4 tiles: .*MaxPooling2D"):
        encoders.shared_weights_at(convnet, (4, 4), needed_for="tiles")
