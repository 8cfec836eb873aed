"""`CollapseMonitor`: is the representation collapsing? Two numbers on a fixed batch every epoch.

- `embedding_std`: the standard deviation over the batch of the L2-normalised embeddings,
  averaged over dimensions (SimSiam, section 4.1), here after subtracting the batch mean (the
  pooled ReLU features of a healthy convnet all share the positive orthant). A collapsed encoder
  maps every image to the same vector: 0. Embeddings spread evenly over the `d` dimensions give
  about 1/sqrt(d).
- `effective_rank`: exp of the entropy of the normalised singular values of the same matrix
  (Roy & Vetterli 2007; RankMe, Garrido et al. 2023): 0 when every embedding is the same, 1 when
  they vary along one line, up to min(batch, d). Dimensional collapse shows as a rank far below
  d even when the std looks fine.

- `top_direction_share`: the share of the same matrix's variance along its first principal
  direction. The methods without negatives (BYOL, SimSiam, DINO) can keep a healthy std and
  still let one feature grow over all others in their first hundreds of steps; cosine neighbours
  then see little but that feature.

All three are written into the epoch's logs, so the progress bar, `History`, TensorBoard and
CSVLogger placed after the monitor in the callback list see them; `warnings.warn` is called
when the std drops below `min_std` (default `0.1 / sqrt(d)`), and once per run when one
direction's share grows past `max_top_share` (from where it was when training began).
"""

from __future__ import annotations

import math
import warnings

import keras
import numpy as np

from keras_ssl.errors import KerasSSLError

# Measured on the digits and CIFAR-10 (docs/results.md, "One feature outgrows the others"): the
# methods with negatives or a decorrelation term stay under 0.46 on the digits and under their
# random init's 0.53 on CIFAR-10; BYOL and DINO reach 0.70-0.79 within 120 steps, SimSiam 0.95
# on CIFAR-10 (0.91 by 360 steps on the digits).
MAX_TOP_SHARE = 0.6


def _centred_unit_rows(embeddings) -> np.ndarray:
    """Rows minus the batch mean, scaled to unit norm; rows that were (numerically) the mean are 0.

    Centring first matters for encoders ending in ReLU + pooling: their features all lie in the
    positive orthant, so uncentred directions look alike even when the encoder is healthy.
    """
    z = np.asarray(embeddings, dtype=np.float64)
    scale = max(float(np.abs(z).max(initial=0.0)), 1e-30)
    z = z - z.mean(axis=0)
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    keep = norms > 1e-6 * scale * math.sqrt(z.shape[1])
    return np.where(keep, z / np.where(keep, norms, 1.0), 0.0)


def _singular_values(embeddings) -> np.ndarray:
    """Singular values of the centred, L2-normalised rows, largest first."""
    return np.linalg.svd(_centred_unit_rows(embeddings), compute_uv=False)


def embedding_std(embeddings) -> float:
    """Mean over dimensions of the batch standard deviation of the centred, L2-normalised rows."""
    return float(_centred_unit_rows(embeddings).std(axis=0).mean())


def top_direction_share(embeddings) -> float:
    """Share of the centred, L2-normalised rows' variance along their first principal direction.

    About 1/d for embeddings spread over `d` dimensions, 1 when they vary along one line: one
    feature (say, "is it a 1") grown so large that cosine neighbours see little else.
    """
    squares = _singular_values(embeddings) ** 2
    total = squares.sum()
    return float(squares[0] / total) if total > 0 else 0.0


def effective_rank(embeddings) -> float:
    """exp(entropy of the normalised singular values) of the centred, L2-normalised rows."""
    singular = _singular_values(embeddings)
    total = singular.sum()
    if total <= 0:
        return 0.0
    p = singular / total
    p = p[p > 0]
    return float(math.exp(-(p * np.log(p)).sum()))


class CollapseMonitor(keras.callbacks.Callback):
    """Writes `embedding_std`, `effective_rank` and `top_direction_share` of a fixed held-out batch
    into the epoch logs.

    Args:
        images: the fixed batch (uint8 or [0, 1] images, or vectors), e.g. 512 held-out
            examples; the model embeds them with `model(images, training=False)` (the encoder,
            as exported).
        every: compute every `every` epochs (and at the last epoch of `fit`).
        min_std: warn when `embedding_std` falls below it (None: 0.1 / sqrt(d)).
        max_top_share: warn (once) when `top_direction_share` grows past it.
        batch_size: embed in chunks of this size.
        prefix: prefix of the log keys ("val_" makes them `val_embedding_std`, ...).

    Example:
    >>> model.fit(data.train_dataset(256), epochs=10,                 # doctest: +SKIP
    ...           callbacks=[CollapseMonitor(data.x_test[:512])])
    """

    def __init__(self, images, every: int = 1, min_std: float | None = None,
                 max_top_share: float = MAX_TOP_SHARE, batch_size: int = 256, prefix: str = ""):
        super().__init__()
        images = np.asarray(images)
        if images.ndim < 2 or len(images) < 2:
            raise KerasSSLError(
                f"CollapseMonitor needs a batch of at least 2 examples, got shape {images.shape}."
            )
        if int(every) < 1:
            raise KerasSSLError(f"CollapseMonitor every must be >= 1, got {every!r}.")
        if not 0 < float(max_top_share) <= 1:
            raise KerasSSLError(f"CollapseMonitor max_top_share is a share of the variance, in "
                                f"(0, 1]; got {max_top_share!r}.")
        self.images = images
        self.every = int(every)
        self.min_std = min_std
        self.max_top_share = float(max_top_share)
        self._warned_top_share = False
        self._start_share = 0.0
        self.batch_size = int(batch_size)
        self.prefix = prefix
        self.history: list[dict] = []

    def _embed(self):
        parts = [keras.ops.convert_to_numpy(self.model(self.images[i:i + self.batch_size],
                                                       training=False))
                 for i in range(0, len(self.images), self.batch_size)]
        return np.concatenate(parts).reshape(len(self.images), -1)

    def measure(self) -> dict:
        """{'embedding_std', 'effective_rank', 'top_direction_share'} of the fixed batch under
        the current weights."""
        z = self._embed()
        return {"embedding_std": embedding_std(z), "effective_rank": effective_rank(z),
                "top_direction_share": top_direction_share(z), "dim": z.shape[1]}

    def on_train_begin(self, logs=None):
        # Some encoders start with one strong direction (brightness, at random init on CIFAR-10
        # about half the variance); only a share that grows past `max_top_share` is warned of.
        self._start_share = top_direction_share(self._embed())
        self._warned_top_share = False

    def on_epoch_end(self, epoch, logs=None):
        last = self.params.get("epochs") if self.params else None
        if (epoch + 1) % self.every and (last is None or epoch + 1 != last):
            return
        stats = self.measure()
        dim = stats.pop("dim")
        self.history.append({"epoch": epoch, **stats})
        if logs is not None:
            for key, value in stats.items():
                logs[self.prefix + key] = value
        threshold = self.min_std if self.min_std is not None else 0.1 / math.sqrt(dim)
        if stats["embedding_std"] < threshold:
            warnings.warn(
                f"Epoch {epoch + 1}: the embeddings are collapsing: the std of the normalised "
                f"embeddings is {stats['embedding_std']:.4g} (below {threshold:.3g}; about "
                f"{1 / math.sqrt(dim):.3g} when they spread over all {dim} dimensions), "
                f"effective rank {stats['effective_rank']:.2f}. Lower the learning rate, check "
                "the method's stop-gradient / predictor, or use stronger augmentation.",
                RuntimeWarning, stacklevel=2,
            )
        share = stats["top_direction_share"]
        if share > self.max_top_share and share > self._start_share and not self._warned_top_share:
            self._warned_top_share = True
            warnings.warn(
                f"Epoch {epoch + 1}: one direction holds {share:.0%} of "
                f"the embeddings' variance (effective rank {stats['effective_rank']:.1f} of "
                f"{dim}): one feature is outgrowing the others and kNN will see little else. "
                "Methods without negatives (byol, simsiam, dino) do this in short runs and on "
                "small data sets (SimSiam on the digits, still after 1,800 steps); simclr, vicreg "
                "and barlow_twins do not.",
                RuntimeWarning, stacklevel=2,
            )


__all__ = ["MAX_TOP_SHARE", "CollapseMonitor", "effective_rank", "embedding_std",
           "top_direction_share"]
