"""`Augmenter`: a serializable chain of augmentation layers that passes `training` down."""

from __future__ import annotations

import keras

from keras_ssl.errors import KerasSSLError


@keras.saving.register_keras_serializable(package="keras_ssl")
class Augmenter(keras.layers.Layer):
    """Apply augmentation layers one after the other, passing `training` to each.

    A layer rather than a `keras.Sequential`: it keeps uint8 inputs as they are (the first layer
    converts them on the device), adds no `Input`, and nests inside a method's `train_step`.

    Args:
        layers: the augmentation layers, in order (at least one).

    Example:
    >>> import numpy as np
    >>> from keras_ssl.augment import RandomResizedCrop, RandomFlip
    >>> aug = Augmenter([RandomResizedCrop(24, 24, seed=1), RandomFlip(seed=2)])
    >>> aug(np.zeros((2, 32, 32, 3), "uint8"), training=True).shape
    TensorShape([2, 24, 24, 3])
    """

    def __init__(self, layers, **kwargs):
        kwargs.setdefault("dtype", "float32")
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        layers = list(layers)
        if not layers or not all(isinstance(layer, keras.layers.Layer) for layer in layers):
            raise KerasSSLError(
                f"Augmenter needs a non-empty list of Keras layers, got {layers!r}. For no "
                "augmentation use keras_ssl.augment.Resize (or to_float_images)."
            )
        # Not `self.layers`: keep clear of the attribute keras.Model and Sequential use.
        self.augmentations = layers

    def build(self, input_shape):
        shape = input_shape
        for layer in self.augmentations:
            if not layer.built:
                layer.build(shape)
            shape = layer.compute_output_shape(shape)
        self.built = True

    def call(self, inputs, training=True):
        x = inputs
        for layer in self.augmentations:
            x = layer(x, training=training)
        return x

    def compute_output_shape(self, input_shape):
        for layer in self.augmentations:
            input_shape = layer.compute_output_shape(input_shape)
        return input_shape

    def compute_output_spec(self, inputs, training=None):
        for layer in self.augmentations:
            inputs = layer.compute_output_spec(inputs)
        return inputs

    def get_config(self):
        return {
            **super().get_config(),
            "layers": [keras.saving.serialize_keras_object(layer) for layer in self.augmentations],
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layers"] = [keras.saving.deserialize_keras_object(c) for c in config["layers"]]
        return cls(**config)
