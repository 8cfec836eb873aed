"""Convolutional image encoders: ResNet (small-image or ImageNet stem) and a small VGG-style ConvNet."""

from __future__ import annotations

import keras
from keras import layers

from keras_ssl.encoders.registry import register_encoder
from keras_ssl.errors import KerasSSLError

_RESNET_BLOCKS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3]}


def _check_image_shape(input_shape) -> tuple[int, int, int]:
    if input_shape is None or len(input_shape) != 3:
        raise KerasSSLError(
            f"An image encoder needs input_shape=(height, width, channels); got {input_shape!r}."
        )
    height, width, channels = input_shape
    if channels not in (1, 3):
        raise KerasSSLError(
            f"Images must have 1 or 3 channels, got {channels} in input_shape={tuple(input_shape)}. "
            "Convert them to grayscale or RGB first."
        )
    return int(height), int(width), int(channels)


def _conv_bn_relu(x, filters, kernel_size, strides=1, name=None, relu=True):
    x = layers.Conv2D(
        filters, kernel_size, strides=strides, padding="same", use_bias=False, name=f"{name}_conv"
    )(x)
    x = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _basic_block(x, filters, strides, name):
    shortcut = x
    y = _conv_bn_relu(x, filters, 3, strides, name=f"{name}_1")
    y = _conv_bn_relu(y, filters, 3, 1, name=f"{name}_2", relu=False)
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn_relu(x, filters, 1, strides, name=f"{name}_proj", relu=False)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, y]))


def _bottleneck_block(x, filters, strides, name):
    shortcut = x
    y = _conv_bn_relu(x, filters, 1, 1, name=f"{name}_1")
    y = _conv_bn_relu(y, filters, 3, strides, name=f"{name}_2")
    y = _conv_bn_relu(y, filters * 4, 1, 1, name=f"{name}_3", relu=False)
    if strides != 1 or x.shape[-1] != filters * 4:
        shortcut = _conv_bn_relu(x, filters * 4, 1, strides, name=f"{name}_proj", relu=False)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, y]))


def _image_input(input_shape):
    inputs = keras.Input(shape=_check_image_shape(input_shape), name="images")
    # Centre the [0, 1] pixels: cheaper than a learned first normalisation, same effect.
    return inputs, layers.Rescaling(2.0, offset=-1.0, name="center")(inputs)


def ResNet(
    depth: int = 18,
    input_shape=(32, 32, 3),
    small_images: bool | None = None,
    width: int = 64,
    name: str | None = None,
) -> keras.Model:
    """A ResNet encoder ending in global-average-pooled features.

    Args:
        depth: 18, 34 (basic blocks) or 50 (bottlenecks).
        input_shape: `(height, width, channels)` of the float32 [0, 1] images it takes.
        small_images: use the 3x3 stride-1 stem without max-pool. `None` picks it for images
            smaller than 64 px.
        width: channels of the first stage (64 in the paper); halve it for quick runs.

    Example:
    >>> encoder = ResNet(18, input_shape=(32, 32, 3), width=16)
    >>> encoder.output_shape
    (None, 128)
    """
    if depth not in _RESNET_BLOCKS:
        raise KerasSSLError(f"ResNet depth must be one of 18, 34, 50; got {depth}.")
    inputs, x = _image_input(input_shape)
    if small_images is None:
        small_images = min(input_shape[0], input_shape[1]) < 64
    if small_images:
        x = _conv_bn_relu(x, width, 3, 1, name="stem")
    else:
        x = _conv_bn_relu(x, width, 7, 2, name="stem")
        x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    block = _bottleneck_block if depth == 50 else _basic_block
    for stage, blocks in enumerate(_RESNET_BLOCKS[depth]):
        filters = width * 2**stage
        for i in range(blocks):
            strides = 2 if (stage > 0 and i == 0) else 1
            x = block(x, filters, strides, name=f"stage{stage + 1}_block{i + 1}")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, x, name=name or f"resnet{depth}")


def ConvNet(input_shape=(32, 32, 3), width: int = 32, name: str = "convnet") -> keras.Model:
    """A small VGG-style encoder (4 conv blocks, ~0.58M parameters at width 32) for CPU runs.

    Each block is conv-BN-ReLU twice; the first three blocks halve the resolution, the last one is
    pooled globally, so any image of 8 px or more works.

    Example:
    >>> ConvNet(input_shape=(28, 28, 1), width=16).output_shape
    (None, 64)
    """
    inputs, x = _image_input(input_shape)
    for stage in range(4):
        filters = width * 2 ** min(stage, 2)
        x = _conv_bn_relu(x, filters, 3, name=f"block{stage + 1}_a")
        x = _conv_bn_relu(x, filters, 3, name=f"block{stage + 1}_b")
        if stage < 3 and x.shape[1] >= 2 and x.shape[2] >= 2:
            x = layers.MaxPooling2D(2, name=f"block{stage + 1}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, x, name=name)


@register_encoder("convnet", "images")
def _convnet(input_shape, width=None):
    return ConvNet(input_shape, width=width or 32)


def _resnet_builder(depth):
    def build(input_shape, width=None):
        return ResNet(depth, input_shape, width=width or 64)

    return build


for _depth in _RESNET_BLOCKS:
    register_encoder(f"resnet{_depth}", "images")(_resnet_builder(_depth))
