"""Published augmentation recipes, each one `FusedAugmenter` layer (an `Augmenter`).

`aug(images, training=True)` makes a random view of each image (uint8 or float [N, H, W, C] in,
float32 [N, h, w, C] in [0, 1] out); `training=False` only resizes to the output size, which is
the deterministic image the encoder sees at inference.
"""

from __future__ import annotations

import itertools

import keras
import tensorflow as tf

from keras_ssl._compat import in_xla_context
from keras_ssl.augment.base import ImageAugmentation, to_float_images, validate_images
from keras_ssl.augment.blur import MAX_SHIFTED_TAPS, GaussianBlur
from keras_ssl.augment.color import ColorJitter, RandomGrayscale, apply_color_matrix
from keras_ssl.augment.crop import RandomResizedCrop, draw_parameters
from keras_ssl.augment.flip import RandomFlip
from keras_ssl.augment.pipeline import Augmenter
from keras_ssl.augment.vector import FeatureMask, FeatureNoise
from keras_ssl.errors import KerasSSLError

# SimCLR turns the blur off on CIFAR-10 (32 px), where it hurts; it uses it on ImageNet.
MIN_BLUR_SIZE = 64
# ... and halves the colour distortion there (strength 0.5 on CIFAR-10, 1.0 on ImageNet).
SMALL_IMAGE_STRENGTH = 0.5


def _applied(layer, images):
    """(apply, draws) of `layer`, drawn as its own call would (nothing drawn when p == 0)."""
    if layer.p == 0.0:
        return None, None
    return draw_parameters(layer, images)


class _CompiledViews:
    """Holds `FusedAugmenter`'s XLA-compiled views function, out of sight of the trackers."""

    function = None


@keras.saving.register_keras_serializable(package="keras_ssl")
class FusedAugmenter(Augmenter):
    """An `Augmenter` that makes its views in fewer passes over the batch: the recipes' type.

    The same layers, the same random draws (each layer's own seed generator, with the ops the
    layer draws with on its own) and so the same views as `Augmenter` on the same layers, up to
    float rounding (tests/test_augment_fused.py); only how the batch is traversed changes:

    - `RandomResizedCrop` and the `RandomFlip` layers right after it: one resampling by gathers
      from the input as it comes (uint8 stays uint8 until the crop has picked its pixels), each
      flip folded in as the crop's column taps in reverse order;
    - `ColorJitter(fused=True)`: one colour matrix per image; `RandomGrayscale`: a gray matrix
      (or the identity) per image;
    - other augmentation layers get the float32 [0, 1] batch without a second check and clip;
    - in a graph that XLA does not compile (a train step with `jit_compile=False`), the views
      compile on their own with XLA (`compile_views`), in stages (`stages()`), which fuses the
      elementwise work into a few loops over the pixels. Measured on 2 CPU cores:
      docs/performance.md.

    With `training=False` it is `Augmenter` (each layer's deterministic path).

    Args:
        layers: the augmentation layers, in order (at least one).
        compile_views: outside an XLA-compiled function, compile the views alone with XLA
            (`tf.function(jit_compile=True)`); inside one they are part of it anyway. Eager
            calls are never compiled.
    """

    def __init__(self, layers, compile_views: bool = True, **kwargs):
        super().__init__(layers, **kwargs)
        self.compile_views = bool(compile_views)
        # In a plain holder: neither Keras nor TensorFlow's SavedModel tracks the function.
        self._compiled = _CompiledViews()

    def get_config(self):
        return {**super().get_config(), "compile_views": self.compile_views}

    def call(self, inputs, training=True):
        if not training:
            return super().call(inputs, training=training)
        validate_images(inputs)
        # The random numbers are drawn here, by the ops every layer draws with on its own
        # (XLA's random number kernels give other numbers for the same seed).
        params = self.draw(inputs)
        if self.compile_views and not tf.executing_eagerly() and not in_xla_context():
            # In a graph that XLA does not compile (a train step with jit_compile=False) the
            # views compile on their own: XLA fuses the chain into a few loops over the pixels,
            # where TensorFlow runs each op as a pass over the whole batch. (Eager calls run op
            # by op: no compilation for each new shape.)
            if self._compiled.function is None:
                self._compiled.function = tf.function(self.views, jit_compile=True,
                                                      autograph=False)
            x = inputs
            for start, stop, compiled in self.stages():
                run = self._compiled.function if compiled else self.views
                x = run(x, params, start, stop)
            return x
        return self.views(inputs, params)

    def stages(self):
        """`(start, stop, compiled)` runs of layers that `call` compiles as separate functions.

        A crop (with the flips folded into it) is a stage of its own: XLA on a CPU fuses what
        reads the crop's output (the contrast mean, every channel of a colour matrix, the blur's
        shifted copies) with the crop and so computes each cropped pixel again for every reader;
        a stage boundary keeps the cropped batch in memory once. A blur with a kernel wider than
        XLA's shifted sums take (over 15 taps: images from about 150 px) is not compiled: it runs
        as a depthwise convolution of the blurred images only. Measured: docs/performance.md.
        """
        layers, cuts, wide = self.augmentations, {0, len(self.augmentations)}, set()
        for i, layer in enumerate(layers):
            if type(layer) is RandomResizedCrop:
                end = i + 1
                while end < len(layers) and type(layers[end]) is RandomFlip:
                    end += 1
                cuts |= {i, end}
            elif type(layer) is GaussianBlur and max(layer.taps) > MAX_SHIFTED_TAPS:
                cuts |= {i, i + 1}
                wide.add(i)
        cuts = sorted(cuts)
        return [(start, stop, start not in wide) for start, stop in itertools.pairwise(cuts)]

    def draw(self, inputs):
        """Per layer, the (apply, draws) its own call would draw; (None, None) where it draws
        nothing (p == 0) or draws for itself (a layer this class does not know)."""
        params = []
        for layer in self.augmentations:
            known = isinstance(layer, ImageAugmentation) and (
                type(layer) is RandomResizedCrop or type(layer).call is ImageAugmentation.call)
            params.append(_applied(layer, inputs) if known else (None, None))
        return params

    def views(self, inputs, params, start=0, stop=None):
        """The training views of `inputs` (checked by `call`) from the `draw(inputs)` numbers:
        layers `start` to `stop` (default: all)."""
        layers, x, i = self.augmentations, inputs, start
        stop = len(layers) if stop is None else stop
        while i < stop:
            layer, (apply, draws) = layers[i], params[i]
            if type(layer) is RandomResizedCrop:
                taps, flip, i = layer.taps(x, draws), None, i + 1
                while i < stop and type(layers[i]) is RandomFlip:
                    flipped = params[i][0]
                    if flipped is not None:  # two flips cancel out
                        flip = flipped if flip is None else tf.not_equal(flip, flipped)
                    i += 1
                x = layer.resample(x, taps, flip)
                continue
            if x.dtype != tf.float32:  # the later layers take float32 in [0, 1]
                x = to_float_images(x)
            if not isinstance(layer, ImageAugmentation) or (
                    type(layer).call is not ImageAugmentation.call):
                x = layer(x, training=True)
            elif apply is None:  # p == 0: nothing to do
                pass
            elif type(layer) is ColorJitter and layer.fused:
                matrix, offset = layer.color_matrix(apply, draws, tf.reduce_mean(x, axis=[1, 2]))
                x = apply_color_matrix(x, matrix, offset)
            elif type(layer) is RandomGrayscale:
                if x.shape[-1] == 3:
                    x = apply_color_matrix(x, layer.matrix(apply, 3))
            else:
                # What ImageAugmentation.call does, less the check and the clip of the input.
                x = layer.transform(x, apply, draws)
            i += 1
        return x


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
           crop_scale=(0.08, 1.0), fused_color: bool = True,
           seed: int | None = None) -> Augmenter:
    """SimCLR's views (Chen et al. 2020, appendix A).

    Random resized crop (area 8-100%, aspect 3/4-4/3) to `image_size`, horizontal flip (p=0.5),
    color jitter (brightness, contrast, saturation 0.8 * strength, hue 0.2 * strength, p=0.8),
    grayscale (p=0.2) and Gaussian blur (p=0.5, kernel 10% of the side, sigma 0.1-2), as a
    `FusedAugmenter`. The jitter is `ColorJitter(fused=True)`: one colour matrix per image, hue
    as a rotation about the gray axis, clipped once (what that changes: `ColorJitter`).

    Args:
        image_size: output size, an int or (height, width).
        strength: color distortion strength s (paper: 1.0 on ImageNet, 0.5 on CIFAR-10);
            `None`: 0.5 for images under 64 pixels, 1.0 from 64 pixels.
        blur: use the blur; `None`: only for images of 64 pixels or more (SimCLR leaves it out
            on CIFAR-10).
        crop_scale: (low, high) area of the random crop as a fraction of the image's.
        fused_color: the jitter as one colour matrix per image (`False`: torchvision's ops one
            by one, each clipped, HSV hue; slower, for comparison).
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
    return FusedAugmenter(
        [
            RandomResizedCrop(height, width, scale=crop_scale, ratio=(3 / 4, 4 / 3),
                              seed=next(seeds)),
            RandomFlip(p=0.5, seed=next(seeds)),
            ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, min(0.2 * s, 0.5), p=0.8,
                        fused=bool(fused_color), seed=next(seeds)),
            RandomGrayscale(p=0.2, seed=next(seeds)),
            *_blur(height, width, blur, next(seeds)),
        ]
    )


def moco_v2(image_size, blur: bool | None = None, seed: int | None = None) -> Augmenter:
    """MoCo v2's views (Chen et al. 2020, "Improved baselines").

    Random resized crop (area 20-100%), color jitter (0.4, 0.4, 0.4, 0.1, p=0.8, fused into one
    colour matrix per image as in `simclr`), grayscale (p=0.2), Gaussian blur (p=0.5, sigma
    0.1-2) and horizontal flip, as a `FusedAugmenter`.

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
    return FusedAugmenter(
        [
            RandomResizedCrop(height, width, scale=(0.2, 1.0), seed=next(seeds)),
            ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8, fused=True, seed=next(seeds)),
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
    return FusedAugmenter(
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
