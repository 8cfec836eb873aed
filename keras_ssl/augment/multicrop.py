"""Multi-crop views (SwAV, Caron et al. 2020; DINO, Caron et al. 2021) and MAE's crop-and-flip.

`MultiCrop` makes 2 global views at the encoder's size and N local views at a smaller size,
each from SimCLR's recipe (`augment.simclr`) with its own crop scale: per image, in the graph,
vectorised over the batch (the batch is tiled once per view and every image of the tiled batch
draws its own crop, flip and colours), so it compiles under XLA like the other recipes.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_ssl.augment.blur import GaussianBlur
from keras_ssl.augment.color import ColorJitter, RandomGrayscale, Solarize
from keras_ssl.augment.crop import RandomResizedCrop
from keras_ssl.augment.flip import RandomFlip
from keras_ssl.augment.pipeline import Augmenter
from keras_ssl.augment.recipes import MIN_BLUR_SIZE, _size, blur_kernel_size, simclr
from keras_ssl.errors import KerasSSLError
from keras_ssl.validate import check_int, check_range

# DINO's defaults for 224 px global crops: local crops of 96 px (3/7 of the side).
LOCAL_FRACTION = 3 / 7
MIN_LOCAL_SIZE = 8


def local_crop_size(image_size) -> tuple[int, int]:
    """DINO's local crop side for `image_size`: 3/7 of it (96 of 224), at least 8 px."""
    height, width = _size(image_size)
    return (max(MIN_LOCAL_SIZE, round(height * LOCAL_FRACTION)),
            max(MIN_LOCAL_SIZE, round(width * LOCAL_FRACTION)))


@keras.saving.register_keras_serializable(package="keras_ssl")
class MultiCrop(keras.layers.Layer):
    """2 global views and `num_local` local views of every image.

    `views = MultiCrop(32)(images)` returns `(global_views, local_views)`: `[2N, H, W, C]` (view
    1 of every image, then view 2) and `[num_local * N, h, w, C]` (local view 1 of every image,
    then view 2, ...), or `None` for the local views when `num_local == 0`. With
    `training=False` the global views are the resized images (twice) and the local ones the
    images resized to the local size.

    Args:
        image_size: side of the global views (an int or (height, width)).
        num_local: local views per image (DINO: 6 or 10; 0 turns multi-crop off).
        local_size: side of the local views (None: 3/7 of the global side, at least 8 px).
        global_scale, local_scale: crop area ranges as fractions of the image's (DINO: (0.4, 1)
            and (0.05, 0.4)).
        seed: integer seed.

    Example:
    >>> import numpy as np
    >>> g, l = MultiCrop(32, num_local=4, seed=0)(np.zeros((2, 32, 32, 3), "uint8"))
    >>> tuple(g.shape), tuple(l.shape)
    ((4, 32, 32, 3), (8, 14, 14, 3))
    """

    def __init__(self, image_size, num_local: int = 6, local_size=None,
                 global_scale=(0.4, 1.0), local_scale=(0.05, 0.4), seed: int | None = None,
                 **kwargs):
        kwargs.setdefault("dtype", "float32")
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.image_size = _size(image_size)
        self.num_local = check_int(num_local, "num_local", least=0)
        self.local_size = local_crop_size(image_size) if local_size is None else _size(local_size)
        if min(self.local_size) < MIN_LOCAL_SIZE:
            raise KerasSSLError(f"Local crops must be at least {MIN_LOCAL_SIZE} px, got "
                                f"{self.local_size}.")
        self.global_scale = check_range(global_scale, "global_scale", 0.0, 1.0)
        self.local_scale = check_range(local_scale, "local_scale", 0.0, 1.0)
        self.seed = seed
        self.global_views = simclr(self.image_size, crop_scale=self.global_scale, seed=seed)
        self.local_views = simclr(self.local_size, crop_scale=self.local_scale,
                                  seed=None if seed is None else seed + 1000)

    def call(self, images, training=True):
        batch = [2, 1, 1, 1]
        global_views = self.global_views(tf.tile(images, batch), training=training)
        if not self.num_local:
            return global_views, None
        local_views = self.local_views(tf.tile(images, [self.num_local, 1, 1, 1]),
                                       training=training)
        return global_views, local_views

    def compute_output_shape(self, input_shape):
        n = input_shape[0]
        channels = input_shape[-1]
        twice = None if n is None else 2 * n
        local = None if n is None else self.num_local * n
        return ((twice, *self.image_size, channels),
                None if not self.num_local else (local, *self.local_size, channels))

    def get_config(self):
        return {**super().get_config(), "image_size": self.image_size,
                "num_local": self.num_local, "local_size": self.local_size,
                "global_scale": self.global_scale, "local_scale": self.local_scale,
                "seed": self.seed}


def mae(image_size, scale=(0.2, 1.0), seed: int | None = None):
    """MAE's pretraining views: a random resized crop (area 20-100%) and a horizontal flip.

    Example:
    >>> import numpy as np
    >>> mae(16, seed=0)(np.zeros((2, 32, 32, 1), "uint8")).shape
    TensorShape([2, 16, 16, 1])
    """
    height, width = _size(image_size)
    return Augmenter([
        RandomResizedCrop(height, width, scale=check_range(scale, "scale", 0.0, 1.0), seed=seed),
        RandomFlip(p=0.5, seed=None if seed is None else seed + 1),
    ])


@keras.saving.register_keras_serializable(package="keras_ssl")
class ViewPair(keras.layers.Layer):
    """Two views of every image from two different augmenters, stacked: `[2N, ...]`.

    `pair(images)` is `concat([first(images), second(images)])`: row n is view 1 of image n, row
    N + n its view 2. Methods with two views (BYOL, SimSiam, ...) use it as is when given one as
    their augmenter (`makes_pairs`), instead of calling one augmenter twice.
    """

    makes_pairs = True

    def __init__(self, first, second, **kwargs):
        kwargs.setdefault("dtype", "float32")
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.first, self.second = first, second

    def call(self, images, training=True):
        return tf.concat([self.first(images, training=training),
                          self.second(images, training=training)], axis=0)

    def get_config(self):
        return {**super().get_config(),
                "first": keras.saving.serialize_keras_object(self.first),
                "second": keras.saving.serialize_keras_object(self.second)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("first", "second"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


def byol(image_size, blur: bool | None = None, seed: int | None = None) -> ViewPair:
    """BYOL's asymmetric pair of views (Grill et al. 2020, table 6).

    Both: random resized crop (8-100%), flip, colour jitter (0.4, 0.4, 0.2, 0.1, p=0.8),
    grayscale (p=0.2). View 1: Gaussian blur always, no solarisation; view 2: blur with p=0.1,
    solarisation with p=0.2. As `augment.simclr`, the blur is left out below 64 px unless `blur`.

    Example:
    >>> import numpy as np
    >>> byol(16, seed=0)(np.zeros((2, 16, 16, 3), "uint8")).shape
    TensorShape([4, 16, 16, 3])
    """
    height, width = _size(image_size)
    if blur is None:
        blur = min(height, width) >= MIN_BLUR_SIZE
    kernel = (blur_kernel_size(height), blur_kernel_size(width))
    base = 0 if seed is None else seed

    def view(blur_p, solarize_p, offset):
        s = None if seed is None else base + offset
        layers = [
            RandomResizedCrop(height, width, scale=(0.08, 1.0), seed=s),
            RandomFlip(p=0.5, seed=None if s is None else s + 1),
            ColorJitter(0.4, 0.4, 0.2, 0.1, p=0.8, seed=None if s is None else s + 2),
            RandomGrayscale(p=0.2, seed=None if s is None else s + 3),
        ]
        if blur:
            layers.append(GaussianBlur(kernel, sigma=(0.1, 2.0), p=blur_p,
                                       seed=None if s is None else s + 4))
        if solarize_p:
            layers.append(Solarize(p=solarize_p, seed=None if s is None else s + 5))
        return Augmenter(layers)

    return ViewPair(view(1.0, 0.0, 0), view(0.1, 0.2, 100))


__all__ = ["MultiCrop", "ViewPair", "byol", "local_crop_size", "mae"]
