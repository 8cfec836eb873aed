"""Backbones: functional Keras models from float32 images in [0, 1] (or vectors) to pooled features.

Any `keras.Model` that maps a batch of inputs to a batch of vectors works as an encoder; these are the
ones keras-ssl builds for you:

- `ResNet(depth=18 | 34 | 50, input_shape, small_images=...)`: He et al. 2016. With
  `small_images=True` the stem is one 3x3 stride-1 convolution without max-pool, as SimCLR, lightly
  and solo-learn use for 32 px CIFAR-10; otherwise the ImageNet stem (7x7 stride 2 + max-pool).
- `ConvNet(input_shape, width=...)`: a small VGG-style network for quick runs on a CPU.
- `MLP(input_dim, hidden=...)`: for feature vectors (tabular rows, sensor readings).
- `TransformerEncoder(vocab_size, sequence_length, ...)`, `LSTMEncoder(vocab_size, ...)`: token ids
  `[N, L]` to per-position features `[N, L, D]`, for the masked language model;
  `MaskedMeanPooling` averages them over the non-padding tokens.
- `build(name, input_shape, width)`: any registered encoder by name (`ENCODERS`).
- `shared_weights_at(encoder, size)`: the same weights on inputs of another size.
"""

from keras_ssl.encoders.convnets import ConvNet, ResNet
from keras_ssl.encoders.mlp import MLP
from keras_ssl.encoders.raw_inputs import ImagesToFloat, serving_model
from keras_ssl.encoders.registry import ENCODERS, INPUT_RANKS, build, names, register_encoder
from keras_ssl.encoders.text import (
    LSTMEncoder,
    MaskedMeanPooling,
    PaddingMask,
    PositionEmbedding,
    TransformerEncoder,
)

__all__ = ["ENCODERS", "INPUT_RANKS", "ConvNet", "ImagesToFloat", "LSTMEncoder", "MLP", "MaskedMeanPooling",
           "PaddingMask", "PositionEmbedding", "ResNet", "TransformerEncoder", "build", "names",
           "register_encoder", "serving_model"]

# Time series [N, T, F] -> [N, D]: registers resnet1d, series_transformer and dilated_conv1d.
from keras_ssl.encoders.series import DilatedConv1D, ResNet1D, SeriesTransformer  # noqa: E402

__all__ += ["DilatedConv1D", "ResNet1D", "SeriesTransformer"]

# Vision Transformers (vit_tiny, vit_small).
from keras_ssl.encoders import vit  # noqa: E402
from keras_ssl.encoders.vit import ViT  # noqa: E402

__all__ += ["ViT", "vit"]

# keras.applications backbones (resnet50_keras, efficientnet_b0, convnext_tiny, mobilenet_v3_small).
from keras_ssl.encoders import applications  # noqa: E402

__all__ += ["applications"]

# keras-hub backbones (hub_resnet18, hub_resnet50, hub_vit_tiny); keras-hub is imported on use.
from keras_ssl.encoders import hub  # noqa: E402

__all__ += ["hub"]

# One encoder's weights on inputs of another size (local crops, tiles, series segments).
from keras_ssl.encoders.shared import shared_weights_at  # noqa: E402

__all__ += ["shared_weights_at"]
