"""Per-image color changes: jitter (brightness, contrast, saturation, hue), grayscale, solarize.

Brightness, contrast and saturation are each an affine map of a pixel, `a * x + g * gray(x) +
m * mean gray level`, with per-image scalars a, g, m. So ColorJitter applies whichever op each
image has in a given position of its random order to the whole batch at once, with no per-image
control flow.
Hue is a shift in HSV space, exactly as torchvision (`tf.image.rgb_to_hsv` compiles under XLA).

`ColorJitter(fused=True)` (what the SimCLR and MoCo v2 recipes use) makes the whole jitter one
linear map per image instead: hue becomes a rotation about the gray axis (a 3x3 matrix), the
four ops in each image's order compose into one 3x3 matrix plus offset, and the image goes
through it once, clipped to [0, 1] at the end only. RandomGrayscale is a 3x3 matrix as well
(gray rows or the identity). See `ColorJitter` for what changes numerically.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_ssl import images as images_lib
from keras_ssl._compat import in_xla_context
from keras_ssl.augment.base import ImageAugmentation, check_range
from keras_ssl.errors import KerasSSLError

# ITU-R 601 luma, as torchvision's rgb_to_grayscale (and PIL's "L" mode): keras_ssl's one constant.
GRAY_WEIGHTS = np.array(images_lib.GRAY_WEIGHTS, np.float32)

_BRIGHTNESS, _CONTRAST, _SATURATION, _HUE, _IDENTITY = range(5)


def grayscale(images: tf.Tensor) -> tf.Tensor:
    """float [N, H, W, 3] -> [N, H, W, 1] luma; 1-channel images are returned as they are."""
    if images.shape[-1] == 1:
        return images
    return images_lib.grayscale(images)


def _factor_range(value, name: str) -> tuple[float, float]:
    # torchvision's convention: a number v means factors in [max(0, 1 - v), 1 + v].
    if isinstance(value, (int, float)):
        if value < 0:
            raise KerasSSLError(
                f"ColorJitter {name} must be >= 0 (factors drawn from [1 - {name}, 1 + {name}]), "
                f"got {value!r}. Use 0 to turn it off."
            )
        return max(0.0, 1.0 - float(value)), 1.0 + float(value)
    return check_range(value, f"ColorJitter {name}", 0.0, None)


def _hue_range(value) -> tuple[float, float]:
    if isinstance(value, (int, float)):
        if not 0 <= value <= 0.5:
            raise KerasSSLError(
                f"ColorJitter hue must be in [0, 0.5] (a fraction of a full turn of the color "
                f"wheel, shifts drawn from [-hue, hue]), got {value!r}."
            )
        return -float(value), float(value)
    return check_range(value, "ColorJitter hue", -0.5, 0.5)


def shift_hue(images: tf.Tensor, turns: tf.Tensor) -> tf.Tensor:
    """Turn the HSV hue of RGB images [N, H, W, 3] by `turns` [N] (1.0 = a full turn).

    The same as torchvision's `adjust_hue` and `tf.image.adjust_hue`, with one shift per image.
    """
    hue, saturation, value = tf.unstack(tf.image.rgb_to_hsv(images), axis=-1)
    hue = tf.math.floormod(hue + turns[:, None, None], 1.0)
    return tf.image.hsv_to_rgb(tf.stack([hue, saturation, value], axis=-1))


def hue_rotation(turns: tf.Tensor) -> tf.Tensor:
    """[N, 3, 3] rotations about the gray axis (1, 1, 1) by `turns` [N] of a full turn.

    In the row convention of `apply_color_matrix` (pixel row vector times matrix). A third of a
    turn maps red to green and green to blue, as a hue shift of 1/3 does; the gray axis (and so
    the mean of R, G and B) is left unchanged. Rodrigues' formula, transposed for rows:
    cos I + sin K^T + (1 - cos) k k^T with k = (1, 1, 1) / sqrt(3) and K its cross-product matrix.
    """
    angle = 2.0 * np.pi * turns
    cos, sin = tf.cos(angle)[:, None, None], tf.sin(angle)[:, None, None]
    k = np.full(3, 1.0 / np.sqrt(3.0), np.float32)
    cross = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]], np.float32)
    eye = tf.eye(3, dtype=tf.float32)[None]
    return cos * eye + sin * tf.constant(cross.T)[None] + (1.0 - cos) * tf.constant(
        np.outer(k, k).astype(np.float32))[None]


def gray_matrix(channels: int) -> tf.Tensor:
    """[C, C]: a pixel row vector times it is its gray level in every channel."""
    if channels == 1:
        return tf.eye(1, dtype=tf.float32)
    return tf.constant(np.repeat(GRAY_WEIGHTS[:, None], 3, axis=1))


def apply_color_matrix(images: tf.Tensor, matrix: tf.Tensor, offset=None) -> tf.Tensor:
    """Each pixel row vector x of image n -> clip(x @ matrix[n] + offset[n], 0, 1).

    `images` [N, H, W, C], `matrix` [N, C, C], `offset` [N, C] or None: one pass over the batch.
    """
    if in_xla_context():
        # XLA fuses this sum of broadcast products (and what comes before and after) into one
        # loop over the pixels; a batched 3x3 dot does not fuse (measured: half the speed).
        channels = images.shape[-1]
        y = sum(images[..., c:c + 1] * matrix[:, None, None, c, :] for c in range(channels))
    else:
        # TensorFlow runs each op as a pass over memory: one batched matmul it is.
        y = tf.einsum("nhwc,ncd->nhwd", images, matrix)
    if offset is not None:
        y = y + offset[:, None, None, :]
    return tf.clip_by_value(y, 0.0, 1.0)


def _planes(images: tf.Tensor) -> tf.Tensor:
    """[N, H, W, C] -> channel planes [N, C, H, W]."""
    return tf.transpose(images, [0, 3, 1, 2])


def _pixels(planes: tf.Tensor) -> tf.Tensor:
    """Channel planes [N, C, H, W] -> [N, H, W, C]."""
    return tf.transpose(planes, [0, 2, 3, 1])


def _planar_gray(planes: tf.Tensor) -> tf.Tensor:
    """Channel planes [N, C, H, W] -> luma [N, 1, H, W] (1-channel planes as they are)."""
    if planes.shape[1] == 1:
        return planes
    return tf.reduce_sum(planes * tf.constant(GRAY_WEIGHTS)[None, :, None, None], axis=1,
                         keepdims=True)


def _planar_shift_hue(planes: tf.Tensor, turns: tf.Tensor) -> tf.Tensor:
    """`shift_hue` on RGB planes [N, 3, H, W]: the RGB -> HSV -> RGB formulas of `tf.image`."""
    r, g, b = planes[:, 0], planes[:, 1], planes[:, 2]
    value = tf.maximum(tf.maximum(r, g), b)
    chroma = value - tf.minimum(tf.minimum(r, g), b)
    saturation = tf.math.divide_no_nan(chroma, value)
    inverse = tf.math.divide_no_nan(tf.ones_like(chroma), chroma)
    hue = tf.where(tf.equal(value, r), (g - b) * inverse,
                   tf.where(tf.equal(value, g), (b - r) * inverse + 2.0,
                            (r - g) * inverse + 4.0)) / 6.0
    hue = hue + turns[:, None, None]
    sixths = 6.0 * (hue - tf.floor(hue))
    channels = (tf.clip_by_value(tf.abs(sixths - 3.0) - 1.0, 0.0, 1.0),
                tf.clip_by_value(2.0 - tf.abs(sixths - 2.0), 0.0, 1.0),
                tf.clip_by_value(2.0 - tf.abs(sixths - 4.0), 0.0, 1.0))
    return tf.stack([((c - 1.0) * saturation + 1.0) * value for c in channels], axis=1)


@keras.saving.register_keras_serializable(package="keras_ssl")
class ColorJitter(ImageAugmentation):
    """Randomly change brightness, contrast, saturation and hue, with new factors per image.

    As torchvision's `ColorJitter`, with factors drawn per image: brightness multiplies the
    image by a factor from `[1 - brightness, 1 + brightness]`; contrast blends the image with its
    mean gray level; saturation blends it with its grayscale version; hue turns the color wheel by
    a fraction of a turn from `[-hue, hue]` (in HSV space). The four ops run in a random order per image (as in
    torchvision and SimCLR), each clipped to [0, 1]. The whole jitter is applied to each image
    with probability `p`. On 1-channel images only brightness and contrast apply.

    With `fused=True` the same factors and order make one linear map per image: brightness,
    contrast and saturation are exact affine maps, hue a rotation about the gray axis (the HSV
    shift turns along a hexagon, the rotation along a circle), and the image is clipped to
    [0, 1] once, at the end (the contrast uses the mean gray of the unclipped image at its place
    in the order, computed from the input's channel means). One read and one write of the batch
    instead of about twenty, for every image size. What changes, as the mean absolute
    difference per value on uniform random RGB images (saturated colours, the worst case;
    tests/test_augment_fused.py bounds it): hue alone, rotation against the HSV shift, 0.04 at a
    shift of 0.05 turn, 0.065 at 0.1, 0.074 at 0.2; SimCLR's jitter as a whole 0.047 at strength
    1.0 and 0.033 at 0.5 (CIFAR-10's), of which clipping only at the end makes 0.012 and 0.004:
    where a brightness above 1 pushed values past 1 before a contrast or saturation pulls them
    back, per-op clipping flattens them and the fused map keeps their detail.

    Args:
        brightness, contrast, saturation: a number v >= 0 (factors from [max(0, 1 - v), 1 + v])
            or a (low, high) pair of factors. 0 turns the op off.
        hue: a number in [0, 0.5] (shifts from [-hue, hue] of a turn) or a (low, high) pair.
        p: probability that an image is jittered.
        random_order: apply the four ops in a random order per image (else in the order above).
        fused: one colour matrix per image, clipped once (fast at every size), instead of the
            exact torchvision ops clipped after each (the default).
        seed: integer seed.

    Example:
    >>> import numpy as np
    >>> images = np.random.randint(0, 256, (4, 32, 32, 3), dtype="uint8")
    >>> jitter = ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8, seed=1)
    >>> out = jitter(images, training=True)
    >>> out.shape, out.dtype.name
    (TensorShape([4, 32, 32, 3]), 'float32')
    """

    # Per image: the four factors, then four keys whose sorting order is the order of the ops.
    draws_per_image = 8

    def __init__(self, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, p: float = 0.8,
                 random_order: bool = True, fused: bool = False, seed: int | None = None,
                 **kwargs):
        super().__init__(p=p, seed=seed, **kwargs)
        self.brightness = _factor_range(brightness, "brightness")
        self.contrast = _factor_range(contrast, "contrast")
        self.saturation = _factor_range(saturation, "saturation")
        self.hue = _hue_range(hue)
        self.random_order = bool(random_order)
        self.fused = bool(fused)

    def factors(self, apply, draws):
        """[N] brightness, contrast, saturation and hue of each image; identity where not applied."""
        factors = []
        for column, ((low, high), identity) in enumerate(
            [(self.brightness, 1.0), (self.contrast, 1.0), (self.saturation, 1.0), (self.hue, 0.0)]
        ):
            # Images left alone get the identity factor exactly, so they come out unchanged.
            factors.append(tf.where(apply, low + (high - low) * draws[:, column], identity))
        return factors

    def order(self, draws):
        """int32 [N, 4]: the op (0 brightness ... 3 hue) each image applies in each slot."""
        if self.random_order:
            return tf.argsort(draws[:, 4:], axis=1)
        return tf.zeros_like(draws[:, 4:], tf.int32) + tf.range(4)

    def color_matrix(self, apply, draws, means):
        """The fused jitter of each image: (matrix [N, C, C], offset [N, C]) for pixel rows.

        `means` [N, C] are the channel means of the images the jitter is applied to (the
        contrast blends with the mean gray of the image at its place in the order; without
        clipping in between that is the gray of the composed map applied to the means).
        """
        channels = means.shape[-1]
        brightness, contrast, saturation, hue = self.factors(apply, draws[:, :4])
        eye = tf.eye(channels, dtype=tf.float32)[None]
        gray = gray_matrix(channels)[None]  # x @ gray: the gray level in each channel
        weights = tf.constant(GRAY_WEIGHTS if channels == 3 else np.ones(1, np.float32))
        identity = eye + 0.0 * brightness[:, None, None]  # [N, C, C]
        rotation = hue_rotation(hue) if channels == 3 else identity
        saturate = (saturation[:, None, None] * eye
                    + (1.0 - saturation)[:, None, None] * gray)
        order = self.order(draws)
        matrix, offset = identity, 0.0 * means
        for slot in range(4):
            pick = tf.one_hot(order[:, slot], 4, dtype=tf.float32)[:, :, None, None]
            # The mean gray level of the image so far (for the contrast).
            mean_gray = tf.reduce_sum(
                (tf.einsum("nc,ncd->nd", means, matrix) + offset) * weights, axis=1)
            steps = tf.stack([brightness[:, None, None] * eye, contrast[:, None, None] * eye,
                              saturate, rotation], axis=1)  # [N, 4, C, C]
            step = tf.reduce_sum(pick * steps, axis=1)
            shift = (pick[:, 1, 0] * (1.0 - contrast[:, None]) * mean_gray[:, None])  # [N, 1]
            matrix = tf.einsum("ncd,nde->nce", matrix, step)
            offset = tf.einsum("nc,ncd->nd", offset, step) + shift
        return matrix, offset

    def transform(self, images, apply, draws):
        if self.fused:
            matrix, offset = self.color_matrix(apply, draws, tf.reduce_mean(images, axis=[1, 2]))
            return apply_color_matrix(images, matrix, offset)
        channels = images.shape[-1]
        brightness, contrast, saturation, hue = self.factors(apply, draws[:, :4])
        # Each affine op is y = a * x + g * gray(x) + m * mean(gray(x)) with per-image scalars:
        # brightness a = b; contrast a = c, m = 1 - c; saturation a = s, g = 1 - s. Column 4 is
        # the identity (a = 1), used to pad the sequences below.
        ones, zeros = tf.ones_like(brightness), tf.zeros_like(brightness)
        scale = tf.stack([brightness, contrast, saturation if channels == 3 else ones, ones, ones],
                         axis=1)  # [N, 5]
        gray_weights = tf.stack(
            [zeros, zeros, (1.0 - saturation) if channels == 3 else zeros, zeros, zeros], axis=1)
        mean_weights = tf.stack([zeros, 1.0 - contrast, zeros, zeros, zeros], axis=1)
        if self.random_order:
            order = tf.argsort(draws[:, 4:], axis=1)
        else:
            order = tf.zeros_like(draws[:, 4:], tf.int32) + tf.range(4)
        # The HSV round trip is the costly op: left out when there is no hue to change.
        if not (channels == 3 and self.hue != (0.0, 0.0)):
            return self._affine_slots(images, [order[:, slot] for slot in range(4)],
                                      scale, gray_weights, mean_weights)
        # Hue is not affine and each image meets it in another slot of its order. Shifting every
        # image's hue in every slot costs 4 HSV round trips; instead align the sequences on the
        # hue: up to 3 affine ops before it (left-padded with the identity), the hue shift once
        # for the whole batch, up to 3 after it (right-padded). Same ops, same order per image.
        position = tf.argmax(tf.cast(tf.equal(order, _HUE), tf.int32), axis=1,
                             output_type=tf.int32)

        def op_at(index):
            valid = (index >= 0) & (index < 4)
            op = tf.gather(order, tf.clip_by_value(index, 0, 3), batch_dims=1)
            return tf.where(valid, op, _IDENTITY)

        x = self._affine_slots(images, [op_at(position - 3 + j) for j in range(3)],
                               scale, gray_weights, mean_weights)
        # Only jittered images: the others stay exactly unchanged (no HSV round trip).
        shifted = tf.clip_by_value(_planar_shift_hue(_planes(x), hue), 0.0, 1.0)
        x = tf.where(apply[:, None, None, None], _pixels(shifted), x)
        return self._affine_slots(x, [op_at(position + 1 + j) for j in range(3)],
                                  scale, gray_weights, mean_weights)

    @staticmethod
    def _affine_slots(images, ops, scale, gray_weights, mean_weights):
        """Apply, slot after slot, the affine op each image has in that slot (then clip)."""
        # On channel planes [N, C, H, W]: XLA on CPU vectorizes along W instead of 1-3 channels
        # (measured: the whole SimCLR recipe at 32 px took half the time). Between consecutive
        # calls the transposes cancel out.
        x = _planes(images)
        for op in ops:
            # Each image picks its op for this slot; the batch applies them all at once.
            pick = tf.one_hot(op, 5, dtype=tf.float32)
            a, g, m = (tf.reduce_sum(pick * w, axis=1)[:, None, None, None]
                       for w in (scale, gray_weights, mean_weights))
            gray = _planar_gray(x)
            mean = tf.reduce_mean(gray, axis=[1, 2, 3], keepdims=True)
            x = tf.clip_by_value(a * x + g * gray + m * mean, 0.0, 1.0)
        return _pixels(x)

    def get_config(self):
        return {
            **super().get_config(),
            "brightness": list(self.brightness),
            "contrast": list(self.contrast),
            "saturation": list(self.saturation),
            "hue": list(self.hue),
            "random_order": self.random_order,
            "fused": self.fused,
        }


@keras.saving.register_keras_serializable(package="keras_ssl")
class RandomGrayscale(ImageAugmentation):
    """Turn each image to grayscale with probability `p`, keeping its channel count.

    RGB images stay 3 channels (the gray level repeated, as torchvision's `RandomGrayscale`), so
    the encoder's input shape does not change; 1-channel images pass through.

    Args:
        p: probability that an image is turned gray.
        seed: integer seed.

    Example:
    >>> import numpy as np
    >>> images = np.random.randint(0, 256, (4, 32, 32, 3), dtype="uint8")
    >>> RandomGrayscale(p=1.0)(images).shape
    TensorShape([4, 32, 32, 3])
    """

    def __init__(self, p: float = 0.2, seed: int | None = None, **kwargs):
        super().__init__(p=p, seed=seed, **kwargs)

    def matrix(self, apply, channels: int) -> tf.Tensor:
        """[N, C, C]: the gray matrix where `apply`, else the identity (pixel rows times it)."""
        eye = tf.eye(channels, dtype=tf.float32)
        return tf.where(apply[:, None, None], gray_matrix(channels)[None], eye[None])

    def transform(self, images, apply, draws):
        if images.shape[-1] == 1:
            return images
        # One batched 3x3 matrix per image (gray rows or the identity): one pass over the batch.
        return apply_color_matrix(images, self.matrix(apply, 3))


@keras.saving.register_keras_serializable(package="keras_ssl")
class Solarize(ImageAugmentation):
    """Invert the pixels at or above `threshold` (x -> 1 - x), per image with probability `p`.

    Used by BYOL for one of its two views (p=0.2).

    Args:
        threshold: gray level in [0, 1] from which pixels are inverted.
        p: probability that an image is solarized.
        seed: integer seed.

    Example:
    >>> import numpy as np
    >>> Solarize(threshold=0.5, p=1.0)(np.array([[[[0.25], [0.75]]]], "float32")).numpy().ravel()
    array([0.25, 0.25], dtype=float32)
    """

    def __init__(self, threshold: float = 0.5, p: float = 0.2, seed: int | None = None, **kwargs):
        super().__init__(p=p, seed=seed, **kwargs)
        if not 0.0 <= float(threshold) <= 1.0:
            raise KerasSSLError(
                f"Solarize threshold must be a gray level in [0, 1] (images are scaled to [0, 1] "
                f"first), got {threshold!r}. For a 0-255 threshold t use t / 255."
            )
        self.threshold = float(threshold)

    def transform(self, images, apply, draws):
        invert = apply[:, None, None, None] & (images >= self.threshold)
        return tf.where(invert, 1.0 - images, images)

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}
