"""Published augmentation recipes, each one `Augmenter` layer.

`aug(images, training=True)` makes a random view of each image (uint8 or float [N, H, W, C] in,
float32 [N, h, w, C] in [0, 1] out); `training=False` only resizes to the output size, which is
the deterministic image the encoder sees at inference.
"""

from __future__ import annotations

from keras_ssl.augment.blur import GaussianBlur
from keras_ssl.augment.color import ColorJitter, RandomGrayscale
from keras_ssl.augment.crop import RandomResizedCrop
from keras_ssl.augment.flip import RandomFlip
from keras_ssl.augment.pipeline import Augmenter
from keras_ssl.augment.vector import FeatureMask, FeatureNoise
from keras_ssl.errors import KerasSSLError

# SimCLR turns the blur off on CIFAR-10 (32 px), where it hurts; it uses it on ImageNet.
MIN_BLUR_SIZE = 64
# ... and halves the colour distortion there (strength 0.5 on CIFAR-10, 1.0 on ImageNet).
SMALL_IMAGE_STRENGTH = 0.5


def _size(image_size) -> tuple[int, int]:
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    try:
        height, width = (int(s) for s in image_size)
        ok = (height, width) == tuple(image_size) and height > 0 and width > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise KerasSSLError(
            f"image_size must be a positive int or a (height, width) pair, got {image_size!r}."
        )
    return height, width


def _seeds(seed):
    # One seed per layer, so that the layers of a seeded recipe do not draw the same numbers.
    count = 0
    while True:
        yield None if seed is None else seed + count
        count += 1


def blur_kernel_size(side: int) -> int:
    """SimCLR's blur kernel: about 10% of the image side, made odd, at least 3."""
    size = max(3, int(0.1 * side))
    return size + 1 if size % 2 == 0 else size


def _blur(height, width, blur, seed):
    if blur is None:
        blur = min(height, width) >= MIN_BLUR_SIZE
    if not blur:
        return []
    kernel = (blur_kernel_size(height), blur_kernel_size(width))
    return [GaussianBlur(kernel, sigma=(0.1, 2.0), p=0.5, seed=seed)]


def simclr(image_size, strength: float | None = None, blur: bool | None = None,
           crop_scale=(0.08, 1.0), seed: int | None = None) -> Augmenter:
    """SimCLR's views (Chen et al. 2020, appendix A).

    Random resized crop (area 8-100%, aspect 3/4-4/3) to `image_size`, horizontal flip (p=0.5),
    color jitter (brightness, contrast, saturation 0.8 * strength, hue 0.2 * strength, p=0.8),
    grayscale (p=0.2) and Gaussian blur (p=0.5, kernel 10% of the side, sigma 0.1-2).

    Args:
        image_size: output size, an int or (height, width).
        strength: color distortion strength s (paper: 1.0 on ImageNet, 0.5 on CIFAR-10);
            `None`: 0.5 for images under 64 pixels, 1.0 from 64 pixels.
        blur: use the blur; `None`: only for images of 64 pixels or more (SimCLR leaves it out
            on CIFAR-10).
        crop_scale: (low, high) area of the random crop as a fraction of the image's.
        seed: integer seed.

    Example:
    >>> import numpy as np
    >>> aug = simclr(32, seed=1)
    >>> aug(np.zeros((2, 32, 32, 3), "uint8"), training=True).shape
    TensorShape([2, 32, 32, 3])
    """
    height, width = _size(image_size)
    if strength is None:
        strength = SMALL_IMAGE_STRENGTH if min(height, width) < MIN_BLUR_SIZE else 1.0
    if not float(strength) >= 0:
        raise KerasSSLError(f"simclr strength must be >= 0 (1.0 in the paper), got {strength!r}.")
    s = float(strength)
    seeds = _seeds(seed)
    return Augmenter(
        [
            RandomResizedCrop(height, width, scale=crop_scale, ratio=(3 / 4, 4 / 3),
                              seed=next(seeds)),
            RandomFlip(p=0.5, seed=next(seeds)),
            ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, min(0.2 * s, 0.5), p=0.8, seed=next(seeds)),
            RandomGrayscale(p=0.2, seed=next(seeds)),
            *_blur(height, width, blur, next(seeds)),
        ]
    )


def moco_v2(image_size, blur: bool | None = None, seed: int | None = None) -> Augmenter:
    """MoCo v2's views (Chen et al. 2020, "Improved baselines").

    Random resized crop (area 20-100%), color jitter (0.4, 0.4, 0.4, 0.1, p=0.8), grayscale
    (p=0.2), Gaussian blur (p=0.5, sigma 0.1-2) and horizontal flip.

    Args:
        image_size: output size, an int or (height, width).
        blur: use the blur; `None`: only for images of 64 pixels or more.
        seed: integer seed.

    Example:
    >>> import numpy as np
    >>> moco_v2(64, seed=1)(np.zeros((2, 96, 96, 3), "uint8")).shape
    TensorShape([2, 64, 64, 3])
    """
    height, width = _size(image_size)
    seeds = _seeds(seed)
    return Augmenter(
        [
            RandomResizedCrop(height, width, scale=(0.2, 1.0), seed=next(seeds)),
            ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8, seed=next(seeds)),
            RandomGrayscale(p=0.2, seed=next(seeds)),
            *_blur(height, width, blur, next(seeds)),
            RandomFlip(p=0.5, seed=next(seeds)),
        ]
    )


def weak(image_size, seed: int | None = None) -> Augmenter:
    """Light views: random resized crop (area 50-100%) and horizontal flip.

    For pretext tasks that must still see the whole object (rotation, jigsaw) and for
    fine-tuning.

    Example:
    >>> import numpy as np
    >>> weak(28, seed=1)(np.zeros((2, 32, 32, 1), "uint8")).shape
    TensorShape([2, 28, 28, 1])
    """
    height, width = _size(image_size)
    seeds = _seeds(seed)
    return Augmenter(
        [
            RandomResizedCrop(height, width, scale=(0.5, 1.0), seed=next(seeds)),
            RandomFlip(p=0.5, seed=next(seeds)),
        ]
    )


def vectors(noise: float = 0.1, mask_rate: float = 0.2, seed: int | None = None) -> Augmenter:
    """Views of feature vectors [N, F]: Gaussian noise, then features masked to 0 per row.

    Example:
    >>> import numpy as np
    >>> vectors(seed=1)(np.ones((4, 10), "float32")).shape
    TensorShape([4, 10])
    """
    seeds = _seeds(seed)
    return Augmenter(
        [FeatureNoise(noise, seed=next(seeds)), FeatureMask(mask_rate, seed=next(seeds))]
    )
