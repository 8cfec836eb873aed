"""Per-image random augmentation as Keras layers, and the recipes that compose them.

Every layer draws its random parameters independently per image, vectorized over the batch,
from a seeded `keras.random.SeedGenerator`; it takes uint8 (0-255) or float (0-1) images
[N, H, W, C] with C in {1, 3} and returns float32 in [0, 1]; it compiles with XLA
(`jit_compile=True`), so augmentation runs inside the training step, on the device.
`training=False` makes every layer deterministic (crops become a plain resize).

>>> import numpy as np
>>> from keras_ssl import augment
>>> aug = augment.simclr(32, seed=0)
>>> views = aug(np.zeros((8, 32, 32, 3), "uint8"), training=True)
>>> views.shape, views.dtype.name
(TensorShape([8, 32, 32, 3]), 'float32')
"""

from keras_ssl.augment.base import ImageAugmentation, to_float_images, validate_images
from keras_ssl.augment.blur import GaussianBlur
from keras_ssl.augment.color import ColorJitter, RandomGrayscale, Solarize
from keras_ssl.augment.crop import RandomResizedCrop, Resize
from keras_ssl.augment.flip import RandomFlip
from keras_ssl.augment.pipeline import Augmenter
from keras_ssl.augment.recipes import FusedAugmenter, moco_v2, simclr, vectors, weak
from keras_ssl.augment.vector import FeatureMask, FeatureNoise, validate_vectors

__all__ = [
    "Augmenter",
    "ColorJitter",
    "FeatureMask",
    "FeatureNoise",
    "FusedAugmenter",
    "GaussianBlur",
    "ImageAugmentation",
    "RandomFlip",
    "RandomGrayscale",
    "RandomResizedCrop",
    "Resize",
    "Solarize",
    "moco_v2",
    "simclr",
    "to_float_images",
    "validate_images",
    "validate_vectors",
    "vectors",
    "weak",
]

# Time series [N, T, F]: per-series layers and the `series` recipe.
from keras_ssl.augment.series import (  # noqa: E402
    ChannelMask,
    Jitter,
    MagnitudeWarp,
    Scaling,
    SegmentPermutation,
    SeriesAugmentation,
    TimeWarp,
    WindowCrop,
    series,
    validate_series,
)

__all__ += ["ChannelMask", "Jitter", "MagnitudeWarp", "Scaling", "SegmentPermutation",
            "SeriesAugmentation", "TimeWarp", "WindowCrop", "series", "validate_series"]

# Multi-crop views (DINO) and MAE's crop-and-flip.
from keras_ssl.augment import multicrop  # noqa: E402
from keras_ssl.augment.multicrop import MultiCrop, ViewPair, byol, mae  # noqa: E402

__all__ += ["MultiCrop", "ViewPair", "byol", "mae", "multicrop"]
