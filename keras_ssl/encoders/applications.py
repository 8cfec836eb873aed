"""`keras.applications` backbones as encoders: random init or weights from a local file.

Each takes float32 images in [0, 1] like every keras-ssl encoder and puts the application's own
preprocessing inside the model (`ApplicationInputs`: grayscale tiled to RGB, scaled to 0-255,
then ResNet50's caffe mode, BGR minus the ImageNet means; EfficientNet, ConvNeXt and MobileNetV3
normalise inside themselves), and ends in global average pooling:

| name | application | features |
| --- | --- | --- |
| `resnet50_keras` | `keras.applications.ResNet50` | 2048 |
| `efficientnet_b0` | `keras.applications.EfficientNetB0` | 1280 |
| `convnext_tiny` | `keras.applications.ConvNeXtTiny` | 768 |
| `mobilenet_v3_small` | `keras.applications.MobileNetV3Small` | 576 |

`weights` is None (random init) or the path of a local `.h5` / `.weights.h5` file of the
application without its top (e.g. the `..._notop.h5` files keras.applications downloads), so
pretraining can continue from ImageNet weights on one's own images without network access.
The applications need images of at least 32 px.

>>> build("mobilenet_v3_small", (32, 32, 3)).output_shape  # doctest: +SKIP
(None, 576)
"""

from __future__ import annotations

import os

import keras
from keras import layers, ops

from keras_ssl.encoders.registry import register_fixed_width
from keras_ssl.errors import KerasSSLError

# name -> (constructor, preprocessing mode, extra constructor arguments)
APPLICATIONS = {
    "resnet50_keras": ("ResNet50", "caffe", {}),
    "efficientnet_b0": ("EfficientNetB0", "raw", {}),
    "convnext_tiny": ("ConvNeXtTiny", "raw", {"include_preprocessing": True}),
    "mobilenet_v3_small": ("MobileNetV3Small", "raw", {"include_preprocessing": True}),
}
MIN_SIZE = 32
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="keras_ssl")
class ApplicationInputs(layers.Layer):
    """Float32 images in [0, 1] -> what a keras.applications model expects.

    1-channel images are tiled to 3; pixels are scaled to 0-255; mode "caffe" (ResNet50) then
    flips RGB to BGR and subtracts the ImageNet channel means; mode "raw" stops at 0-255.
    """

    def __init__(self, mode: str = "raw", **kwargs):
        super().__init__(**kwargs)
        if mode not in ("raw", "caffe"):
            raise KerasSSLError(f"ApplicationInputs mode must be 'raw' or 'caffe', got {mode!r}.")
        self.mode = mode

    def call(self, images):
        if images.shape[-1] == 1:
            images = ops.tile(images, (1, 1, 1, 3))
        x = images * 255.0
        if self.mode == "caffe":
            x = x[..., ::-1] - ops.convert_to_tensor(_CAFFE_MEAN_BGR, dtype=x.dtype)
        return x

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 3)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def application_encoder(name: str, input_shape, weights: str | None = None) -> keras.Model:
    """The keras.applications backbone registered as `name`, as an encoder of `input_shape`."""
    if name not in APPLICATIONS:
        raise KerasSSLError(f"Unknown application {name!r}; choose one of {', '.join(APPLICATIONS)}.")
    if input_shape is None or len(input_shape) != 3 or input_shape[-1] not in (1, 3):
        raise KerasSSLError(f"{name} takes images (height, width, 1 or 3 channels), got "
                            f"input_shape={input_shape!r}.")
    height, width, channels = (int(d) for d in input_shape)
    if min(height, width) < MIN_SIZE:
        raise KerasSSLError(f"{name} needs images of at least {MIN_SIZE} px, got {height}x{width}. "
                            "Resize them (data.load(..., image_size=32)) or use convnet/resnet18.")
    if weights is not None:
        weights = os.fspath(weights)
        if not os.path.isfile(weights):
            raise KerasSSLError(f"{name}: weights file {weights!r} does not exist. Pass the path "
                                "of a local .h5 / .weights.h5 file of the model without its top, "
                                "or weights=None for random init.")
    constructor, mode, extra = APPLICATIONS[name]
    try:
        backbone = getattr(keras.applications, constructor)(
            include_top=False, weights=weights, input_shape=(height, width, 3), pooling="avg",
            **extra)
    except ValueError as err:
        raise KerasSSLError(f"{name} could not be built or could not load {weights!r}: {err}") from err
    inputs = keras.Input(shape=(height, width, channels), name="images")
    x = ApplicationInputs(mode, name="application_inputs")(inputs)
    return keras.Model(inputs, backbone(x), name=name)


register_fixed_width(APPLICATIONS, "images", application_encoder)

__all__ = ["APPLICATIONS", "ApplicationInputs", "application_encoder"]
