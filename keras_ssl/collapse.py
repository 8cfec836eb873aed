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

Both are written into the epoch's logs, so the progress bar, `History`, TensorBoard and
CSVLogger placed after the monitor in the callback list see them; `warnings.warn` is called
when the std drops below `min_std` (default `0.1 / sqrt(d)`).
"""

from __future__ import annotations

import math
import warnings

import keras
import numpy as np

from keras_ssl.errors import KerasSSLError


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


def embedding_std(embeddings) -> float:
    """Mean over dimensions of the batch standard deviation of the centred, L2-normalised rows."""
    return float(_centred_unit_rows(embeddings).std(axis=0).mean())


def effective_rank(embeddings) -> float:
    """exp(entropy of the normalised singular values) of the centred, L2-normalised rows."""
    z = _centred_unit_rows(embeddings)
    singular = np.linalg.svd(z, compute_uv=False)
    total = singular.sum()
    if total <= 0:
        return 0.0
    p = singular / total
    p = p[p > 0]
    return float(math.exp(-(p * np.log(p)).sum()))


class CollapseMonitor(keras.callbacks.Callback):
    """Writes `embedding_std` and `effective_rank` of a fixed held-out batch into the epoch logs.

    Args:
        images: the fixed batch (uint8 or [0, 1] images, or vectors), e.g. 512 held-out
            examples; the model embeds them with `model(images, training=False)` (the encoder,
            as exported).
        every: compute every `every` epochs (and at the last epoch of `fit`).
        min_std: warn when `embedding_std` falls below it (None: 0.1 / sqrt(d)).
        batch_size: embed in chunks of this size.
        prefix: prefix of the log keys ("val_" makes them `val_embedding_std`, ...).

    Example:
    >>> model.fit(data.train_dataset(256), epochs=10,                 # doctest: +SKIP
    ...           callbacks=[CollapseMonitor(data.x_test[:512])])
    """

    def __init__(self, images, every: int = 1, min_std: float | None = None,
                 batch_size: int = 256, prefix: str = ""):
        super().__init__()
        images = np.asarray(images)
        if images.ndim < 2 or len(images) < 2:
            raise KerasSSLError(
                f"CollapseMonitor needs a batch of at least 2 examples, got shape {images.shape}."
            )
        if int(every) < 1:
            raise KerasSSLError(f"CollapseMonitor every must be >= 1, got {every!r}.")
        self.images = images
        self.every = int(every)
        self.min_std = min_std
        self.batch_size = int(batch_size)
        self.prefix = prefix
        self.history: list[dict] = []

    def _embed(self):
        parts = [keras.ops.convert_to_numpy(self.model(self.images[i:i + self.batch_size],
                                                       training=False))
                 for i in range(0, len(self.images), self.batch_size)]
        return np.concatenate(parts).reshape(len(self.images), -1)

    def measure(self) -> dict:
        """{'embedding_std', 'effective_rank'} of the fixed batch under the current weights."""
        z = self._embed()
        return {"embedding_std": embedding_std(z), "effective_rank": effective_rank(z),
                "dim": z.shape[1]}

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


__all__ = ["CollapseMonitor", "effective_rank", "embedding_std"]
