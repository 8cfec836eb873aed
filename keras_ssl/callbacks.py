"""Keras callbacks that watch a self-supervised run: held-out kNN accuracy while it trains.

The loss of a self-supervised method says little about how useful the features are; the kNN
accuracy of its embeddings on labelled held-out data does (InstDisc, lightly, solo-learn).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_ssl import evaluate
from keras_ssl.errors import KerasSSLError


def _as_labelled_pair(data, name: str):
    if isinstance(data, tf.data.Dataset):
        return data, None  # batches of (inputs, labels), embedded batch by batch
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise KerasSSLError(
            f"KNNMonitor {name} must be a pair (x, y) of arrays, got {type(data).__name__}."
        )
    x, y = np.asarray(data[0]), np.asarray(data[1])
    if len(x) == 0 or len(x) != len(y):
        raise KerasSSLError(
            f"KNNMonitor {name}: {len(x)} examples and {len(y)} labels; give one label per "
            "example and at least one example."
        )
    return x, y.reshape(-1)


class KNNMonitor(keras.callbacks.Callback):
    """Weighted kNN accuracy (k=200, cosine, t=0.1) on held-out data, written into the logs.

    Every `every_n_epochs` epochs (and after the last one) it embeds `train_data` (the memory bank)
    and `val_data` with the model being trained, scores `val_data` with
    `keras_ssl.evaluate.knn_accuracy` and writes it as `val_knn_accuracy` into the epoch's logs:
    the progress bar, `History`, `TensorBoard`, `EarlyStopping` and `ModelCheckpoint` all see it.
    Keras calls callbacks in list order and appends its own progress bar and `History` last, so
    list `KNNMonitor` before any other callback that should read `val_knn_accuracy`. Epochs
    without an evaluation carry no `val_knn_accuracy` entry; `scores` maps every evaluated epoch
    (1-based) to its accuracy.

    Args:
        train_data: `(x, y)` labelled examples (raw inputs: uint8 images or float vectors), or a
            `tf.data.Dataset` of `(inputs, labels)` batches (a stream: embedded batch by batch,
            read again at each evaluation; keep it to a bounded sample).
        val_data: `(x, y)` labelled held-out examples to score, or such a dataset.
        every_n_epochs: evaluate every this many epochs; embedding is the cost, so a few epochs
            apart keeps it cheap.
        k: neighbours that vote.
        temperature: vote weights are exp(similarity / temperature).
        batch_size: examples per embedding batch.
        verbose: print one line per evaluation.

    Example:
    >>> import numpy as np, keras_ssl
    >>> model = keras_ssl.SimCLR(keras_ssl.encoders.ConvNet((16, 16, 1), width=4))
    >>> model.compile(optimizer="adam")
    >>> x = np.random.randint(0, 256, (32, 16, 16, 1), dtype="uint8"); y = np.arange(32) % 2
    >>> monitor = KNNMonitor((x[:24], y[:24]), (x[24:], y[24:]), every_n_epochs=1, k=5)
    >>> history = model.fit(x, batch_size=8, epochs=2, verbose=0, callbacks=[monitor])
    >>> len(history.history["val_knn_accuracy"])
    2
    """

    def __init__(self, train_data, val_data, every_n_epochs: int = 1, k: int = 200,
                 temperature: float = 0.1, batch_size: int = 256, verbose: int = 0):
        super().__init__()
        if isinstance(every_n_epochs, bool) or not isinstance(every_n_epochs, int) or (
            every_n_epochs < 1
        ):
            raise KerasSSLError(f"every_n_epochs must be a positive integer, got {every_n_epochs!r}.")
        if k < 1:
            raise KerasSSLError(f"KNNMonitor k must be at least 1, got {k}.")
        self.train_x, self.train_y = _as_labelled_pair(train_data, "train_data")
        self.val_x, self.val_y = _as_labelled_pair(val_data, "val_data")
        self.every_n_epochs = every_n_epochs
        self.k = k
        self.temperature = temperature
        self.batch_size = batch_size
        self.verbose = verbose
        self.num_classes = (None if self.train_y is None or self.val_y is None
                            else int(max(self.train_y.max(), self.val_y.max())) + 1)
        self.scores: dict[int, float] = {}
        self._embed_fn = None

    def on_train_begin(self, logs=None):
        # One traced function for the whole run: the model's weights change, its graph does not.
        self._embed_fn = evaluate.embedding_function(self.model)

    def _due(self, epoch: int) -> bool:
        last = self.params.get("epochs") if self.params else None
        return (epoch + 1) % self.every_n_epochs == 0 or (last is not None and epoch + 1 == last)

    def score(self) -> float:
        """kNN accuracy of the model's current embeddings of `val_data`."""
        fn = self._embed_fn or evaluate.embedding_function(self.model)
        train, train_y = evaluate._embedded(fn, self.train_x, self.train_y, self.batch_size)
        val, val_y = evaluate._embedded(fn, self.val_x, self.val_y, self.batch_size)
        return evaluate.knn_accuracy(train, train_y, val, val_y, k=self.k,
                                     temperature=self.temperature, num_classes=self.num_classes)

    def on_epoch_end(self, epoch, logs=None):
        if not self._due(epoch):
            return
        accuracy = self.score()
        self.scores[epoch + 1] = accuracy
        if logs is not None:
            logs["val_knn_accuracy"] = accuracy
        if self.verbose:
            print(f"Epoch {epoch + 1}: val_knn_accuracy = {accuracy:.4f}")
