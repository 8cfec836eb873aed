"""Methods look at the data they are built for: pretext tasks that the data make ill-posed warn
and name a better method; MoCo sizes its queue to the data."""

import warnings

import numpy as np
import pytest

import keras_ssl
from keras_ssl import data as data_lib
from keras_ssl import images, pretext
from keras_ssl.pipeline import build_model


@pytest.fixture(scope="module")
def digits():
    return data_lib.load("digits")


@pytest.fixture(scope="module")
def textures():
    x = np.random.default_rng(0).integers(0, 256, (300, 32, 32, 3), dtype=np.uint8)
    return data_lib.load(x)


def test_rotation_lookalikes_and_fine_detail_measure_what_they_say(digits, textures):
    assert pretext.rotation_lookalikes(digits.x_train[:256]) > 0.15
    assert pretext.rotation_lookalikes(textures.x_train) < 0.02
    assert images.fine_detail(digits.x_train[:256]) < 0.12 < images.fine_detail(textures.x_train)


@pytest.mark.parametrize("method, word", [("rotnet", "RotNet cannot tell their rotation"),
                                          ("jigsaw", "Jigsaw solves such puzzles")])
def test_ill_posed_pretext_warns_and_names_a_better_method(method, word, digits, textures):
    with pytest.warns(UserWarning, match=word) as record:
        build_model(method, digits, width=4)
    assert "simclr or denoising" in str(record[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_model(method, textures, width=4)


def test_moco_queue_fits_the_data(digits, textures):
    assert build_model("moco", digits, width=4).queue_size == 512  # 1,437 images
    assert build_model("moco", textures, width=4).queue_size == 256  # the least
    big = data_lib.SSLData(np.zeros((20_000, 8, 8, 1), np.uint8), name="big")
    assert keras_ssl.MoCo.from_data(keras_ssl.encoders.ConvNet((8, 8, 1), width=4),
                                    big).queue_size == 4096
    assert build_model("moco", digits, width=4,
                       method_options={"queue_size": 1024}).queue_size == 1024
