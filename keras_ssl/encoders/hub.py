"""keras-hub backbones as encoders (`pip install 'keras-ssl[hub]'`): random init, or weights from
a local file or keras-hub preset folder.

| name | keras-hub backbone | features |
| --- | --- | --- |
| `hub_resnet18` | `ResNetBackbone`, basic blocks [2, 2, 2, 2], the ImageNet stem | 512 |
| `hub_resnet50` | `ResNetBackbone`, bottleneck blocks [3, 4, 6, 3], the ImageNet stem | 2048 |
| `hub_vit_tiny` | `ViTBackbone`, width 192, 12 layers, 3 heads; patches of 4 px below 64 px, else 16 | 192 |

Each takes float32 images in [0, 1] like every keras-ssl encoder: 1-channel images are tiled to
RGB and normalised as keras-hub's image converters do (ImageNet mean and standard deviation, or a
preset's own scale and offset) inside the model, and the backbone's output is pooled to `[N, D]`
(average over the feature map; the class token of a ViT).

`weights` is None (random init, offline), a `.weights.h5` file of the same backbone, or a
keras-hub preset folder on disk (its `config.json` and `model.weights.h5`, e.g. what
`keras_hub.models.Backbone.from_preset("resnet_50_imagenet")` downloads, copied from a machine with
network access): continuing from pretrained weights on one's own images. A preset folder brings
its own architecture: the name then only says the family.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
from keras import layers, ops

from keras_ssl.encoders.registry import register_fixed_width
from keras_ssl.errors import KerasSSLError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# name -> (keras-hub class, constructor arguments apart from the image shape)
BACKBONES = {
    "hub_resnet18": ("ResNetBackbone", dict(
        input_conv_filters=[64], input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 128, 256, 512], stackwise_num_blocks=[2, 2, 2, 2],
        stackwise_num_strides=[1, 2, 2, 2], block_type="basic_block")),
    "hub_resnet50": ("ResNetBackbone", dict(
        input_conv_filters=[64], input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 128, 256, 512], stackwise_num_blocks=[3, 4, 6, 3],
        stackwise_num_strides=[1, 2, 2, 2], block_type="bottleneck_block")),
    "hub_vit_tiny": ("ViTBackbone", dict(num_layers=12, num_heads=3, hidden_dim=192, mlp_dim=768)),
}


def keras_hub():
    """The keras_hub module, or a `KerasSSLError` naming the extra that installs it."""
    try:
        import keras_hub as module
    except ImportError as err:
        raise KerasSSLError(
            "The hub_* encoders need keras-hub: pip install 'keras-ssl[hub]' (or keras-hub)."
        ) from err
    return module


@keras.saving.register_keras_serializable(package="keras_ssl")
class HubInputs(layers.Layer):
    """Float32 images in [0, 1] -> `pixels * scale + offset` per channel on 0-255 pixels (what a
    keras-hub `ImageConverter` computes); 1-channel images are tiled to RGB first."""

    def __init__(self, scale=None, offset=None, **kwargs):
        super().__init__(**kwargs)
        self.scale = [float(s) for s in (scale or [1 / (255 * d) for d in IMAGENET_STD])]
        self.offset = [float(o) for o in (offset or [-m / d for m, d in
                                                     zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)])]

    def call(self, images):
        if images.shape[-1] == 1:
            images = ops.tile(images, (1, 1, 1, 3))
        scale = ops.convert_to_tensor(self.scale, dtype=images.dtype)
        offset = ops.convert_to_tensor(self.offset, dtype=images.dtype)
        return images * 255.0 * scale + offset

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 3)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}


def _converter_scale_offset(hub, preset: str):
    """A preset's own image scale and offset, or (None, None) where it has no image converter."""
    try:
        converter = hub.layers.ImageConverter.from_preset(preset)
    except Exception:  # noqa: BLE001 - presets without an image converter
        return None, None
    def per_channel(value):
        if value is None:
            return None
        values = ops.convert_to_numpy(value).reshape(-1).tolist()
        return values * 3 if len(values) == 1 else values
    return per_channel(converter.scale), per_channel(converter.offset)


def hub_encoder(name: str, input_shape, weights: str | os.PathLike | None = None) -> keras.Model:
    """The keras-hub backbone registered as `name`, as an encoder of images of `input_shape`."""
    if name not in BACKBONES:
        raise KerasSSLError(f"Unknown keras-hub encoder {name!r}; choose one of "
                            f"{', '.join(BACKBONES)}.")
    if input_shape is None or len(input_shape) != 3 or input_shape[-1] not in (1, 3):
        raise KerasSSLError(f"{name} takes images (height, width, 1 or 3 channels), got "
                            f"input_shape={input_shape!r}.")
    hub = keras_hub()
    height, width, channels = (int(d) for d in input_shape)
    class_name, arguments = BACKBONES[name]
    cls = getattr(hub.models, class_name)
    scale = offset = None
    path = None if weights is None else Path(weights)
    if path is not None and not path.exists():
        raise KerasSSLError(f"{name}: weights {str(path)!r} do not exist. Pass a .weights.h5 file "
                            "of the same backbone, a keras-hub preset folder, or no weights for "
                            "random init.")
    try:
        if path is not None and path.is_dir():
            backbone = cls.from_preset(str(path), load_weights=True)
            scale, offset = _converter_scale_offset(hub, str(path))
        else:
            if class_name == "ViTBackbone":
                arguments = {**arguments, "patch_size": 4 if min(height, width) < 64 else 16}
            backbone = cls(image_shape=(height, width, 3), **arguments)
            if path is not None:
                backbone.load_weights(str(path))
    except (ValueError, OSError, KeyError) as err:
        raise KerasSSLError(f"{name} could not be built or could not load {str(path)!r}: "
                            f"{err}".splitlines()[0]) from err
    inputs = keras.Input(shape=(height, width, channels), name="images")
    x = backbone(HubInputs(scale, offset, name="hub_inputs")(inputs))
    if class_name == "ViTBackbone":
        x = x[:, 0]  # the class token
    else:
        x = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, x, name=name)


register_fixed_width(BACKBONES, "images", hub_encoder)

__all__ = ["BACKBONES", "HubInputs", "hub_encoder"]
