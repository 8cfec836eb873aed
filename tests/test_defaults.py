"""keras_ssl.defaults: the encoder pretrain trains, by input shape."""

import pytest

from keras_ssl import defaults


@pytest.mark.parametrize("shape, encoder, width", [
    ((28, 28, 1), "convnet", 32), ((32, 32, 3), "convnet", 32), ((63, 63, 3), "convnet", 32),
    ((64, 64, 3), "resnet18", 64), ((96, 96, 3), "resnet18", 64), ((64,), "mlp", None)])
def test_the_encoder_follows_the_input_shape(shape, encoder, width):
    chosen = defaults.choose(shape)
    assert (chosen.encoder, chosen.width) == (encoder, width)
    assert (defaults.BATCH_SIZE, defaults.LEARNING_RATE) == (256, 2e-3)
    assert defaults.choose(shape).build_encoder(shape).name == encoder


def test_the_chosen_encoder_is_built_for_the_shape():
    encoder = defaults.choose((28, 28, 1)).build_encoder((28, 28, 1))
    assert encoder.name == "convnet" and encoder.input_shape == (None, 28, 28, 1)
    assert encoder.count_params() == 583_712  # width 32 on one channel
