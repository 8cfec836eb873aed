"""An encoder wrapped to take raw inputs as they are stored and served: uint8 images (or float32
vectors) -> embeddings. Methods export it; `keras_ssl.export` writes it as the SavedModel."""

from __future__ import annotations

import keras

from keras_ssl.errors import KerasSSLError
from keras_ssl.images import to_float_images


@keras.saving.register_keras_serializable(package="keras_ssl")
class ImagesToFloat(keras.layers.Layer):
    """uint8 images (0-255) or float images in [0, 1] -> float32 in [0, 1]."""

    def call(self, images):
        return to_float_images(images)

    def compute_output_shape(self, input_shape):
        return input_shape


def serving_model(encoder: keras.Model) -> keras.Model:
    """Wrap an encoder so it takes raw inputs: uint8 images (or float32 vectors) -> embeddings."""
    shape = encoder.input_shape
    if len(shape) == 4:
        if any(d is None for d in shape[1:]):
            raise KerasSSLError(
                f"Exporting needs an encoder with a fixed input size, got {shape}. Build it with "
                "input_shape=(height, width, channels)."
            )
        inputs = keras.Input(shape=shape[1:], dtype="uint8", name="images")
        embeddings = encoder(ImagesToFloat(name="to_float")(inputs))
    elif len(shape) == 2:
        inputs = keras.Input(shape=shape[1:], dtype="float32", name="features")
        embeddings = encoder(inputs)
    else:
        raise KerasSSLError(
            f"Cannot export an encoder with input shape {shape}: images [N,H,W,C] or vectors [N,F]."
        )
    return keras.Model(inputs, embeddings, name=f"{encoder.name}_serving")
