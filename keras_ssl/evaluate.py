"""How good is an encoder? Embed labelled data and score it with kNN and a linear probe.

Both probes leave the encoder frozen: they measure the representation, not a fine-tuned model.
"""

from __future__ import annotations

import weakref

import keras
import numpy as np
import tensorflow as tf

from keras_ssl.errors import KerasSSLError
from keras_ssl.serving import resolve_version


def _as_callable(encoder_or_path):
    """A function from a batch of raw inputs to embeddings, for a model, a method or a path."""
    if isinstance(encoder_or_path, keras.Model):
        model = encoder_or_path
        # A sequence encoder's per-position features need the method's own pooling (call()).
        if hasattr(model, "preprocess") and hasattr(model, "encoder") and (
            getattr(model, "encoder_output_rank", 2) == 2
        ):
            encoder = getattr(model, "embedding_encoder", model.encoder)
            return lambda x: encoder(model.preprocess(x), training=False)
        return lambda x: model(x, training=False)
    loaded = tf.saved_model.load(str(resolve_version(encoder_or_path)))
    (name, spec), = loaded.signatures["serving_default"].structured_input_signature[1].items()

    def call(x):
        # Reached through `loaded`, which the closure keeps alive: a signature alone does not,
        # and once the loaded object is collected its variables are deleted with it.
        return loaded.signatures["serving_default"](**{name: tf.cast(x, spec.dtype)})["embeddings"]

    return call


def embed(encoder_or_path, data, batch_size: int = 256) -> np.ndarray:
    """Embeddings `[N, D]` (float32) of `data` by an encoder.

    `encoder_or_path` is a keras_ssl method, a Keras encoder, or an exported SavedModel folder.
    `data` is an array of raw inputs, or a `tf.data.Dataset` of batches of them (or of
    `(inputs, labels)` batches), embedded batch by batch as it is read: only the embeddings are
    kept (see `embed_to_file` to keep not even those).
    """
    return embed_with(embedding_function(encoder_or_path), data, batch_size)


# One traced function per live model: every embed() of a model during a run (kNN monitor epochs,
# evaluations, plots) reuses its graph instead of tracing a new one, while the weights it reads
# go on changing.
_TRACED = weakref.WeakKeyDictionary()


def embedding_function(encoder_or_path):
    """A traced function from a batch of raw inputs to embeddings; build it once, call it often."""
    if isinstance(encoder_or_path, keras.Model):
        if encoder_or_path not in _TRACED:
            # A weak reference: the cached function must not keep its model (the key) alive.
            model = weakref.ref(encoder_or_path)
            _TRACED[encoder_or_path] = tf.function(lambda x: _as_callable(model())(x),
                                                   reduce_retracing=True)
        return _TRACED[encoder_or_path]
    return tf.function(_as_callable(encoder_or_path), reduce_retracing=True)


def embed_with(fn, data, batch_size: int = 256) -> np.ndarray:
    """Embeddings `[N, D]` (float32) of `data` (an array, or a `tf.data.Dataset` of batches) by
    `fn` (from `embedding_function`), in batches."""
    chunks = [embeddings for embeddings, _ in _embedded_batches(fn, data, batch_size)]
    if not chunks:
        raise KerasSSLError("embed() got no examples.")
    return np.concatenate(chunks)


def embed_labelled(fn, dataset) -> tuple[np.ndarray, np.ndarray]:
    """`(embeddings, labels)` of a `tf.data.Dataset` of `(inputs, labels)` batches, batch by
    batch (`fn` from `embedding_function`)."""
    embeddings, labels = [], []
    for e, y in _embedded_batches(fn, dataset, None):
        if y is None:
            raise KerasSSLError("embed_labelled needs a dataset of (inputs, labels) batches.")
        embeddings.append(e)
        labels.append(np.asarray(y).reshape(-1))
    if not embeddings:
        raise KerasSSLError("embed() got no examples.")
    return np.concatenate(embeddings), np.concatenate(labels)


def _embedded_batches(fn, data, batch_size):
    """(float32 embeddings, labels or None) per batch of an array or a dataset of batches."""
    if isinstance(data, tf.data.Dataset):
        for batch in data:
            x, y = (batch[0], batch[1]) if isinstance(batch, (tuple, list)) else (batch, None)
            yield np.asarray(fn(x), dtype="float32"), (None if y is None else y.numpy())
        return
    data = np.asarray(data)
    for i in range(0, len(data), batch_size):
        yield np.asarray(fn(tf.constant(data[i : i + batch_size])), dtype="float32"), None


def embed_to_file(encoder_or_path, dataset, path, batch_size: int = 256) -> int:
    """Embed `dataset` (an array, or a `tf.data.Dataset` of batches or `(inputs, labels)`
    batches) into the `.npz` file `path` as it goes: `embeddings` `[N, D]` float32 (and `labels`
    when the batches carry them). Memory holds one batch, never all N embeddings; the file appears
    complete or not at all (written under a temporary name, then renamed). Returns N."""
    import os
    import tempfile
    import zipfile

    fn = embedding_function(encoder_or_path)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    rows, dim, dtype_ok = 0, None, True
    with tempfile.TemporaryFile(dir=folder) as raw, tempfile.TemporaryFile(dir=folder) as ys:
        for embeddings, labels in _embedded_batches(fn, dataset, batch_size):
            if dim is None:
                dim = embeddings.shape[1:]
            raw.write(np.ascontiguousarray(embeddings).tobytes())
            if labels is not None:
                ys.write(np.asarray(labels, np.int64).reshape(-1).tobytes())
            else:
                dtype_ok = False
            rows += len(embeddings)
        if rows == 0:
            raise KerasSSLError("embed() got no examples.")
        temporary = f"{path}.{os.getpid()}.tmp"
        try:
            with zipfile.ZipFile(temporary, "w", allowZip64=True) as archive:
                members = [("embeddings", raw, np.float32, (rows, *dim))]
                if dtype_ok and ys.tell() == rows * 8:
                    members.append(("labels", ys, np.int64, (rows,)))
                for name, source, dtype, shape in members:
                    source.seek(0)
                    with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                        np.lib.format.write_array_header_1_0(
                            member, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                     "fortran_order": False, "shape": shape})
                        while chunk := source.read(1 << 24):
                            member.write(chunk)
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
    return rows


def knn_accuracy(train_x, train_y, test_x, test_y, k: int = 200, temperature: float = 0.1,
                 num_classes: int | None = None, batch_size: int = 1024,
                 bank_chunk: int = 65536) -> float:
    """Weighted kNN accuracy on embeddings (Wu et al. 2018, the monitor of lightly and solo-learn).

    Cosine similarity to the training embeddings; each of the k nearest votes for its class with
    weight exp(similarity / temperature). The neighbours are found in chunks of `batch_size` test
    and `bank_chunk` training embeddings, keeping a running top k: memory grows with the chunks,
    not with the product of the two sets' sizes.
    """
    train_x = _l2_normalize(np.asarray(train_x, "float32"))
    test_x = _l2_normalize(np.asarray(test_x, "float32"))
    train_y = np.asarray(train_y).astype(int)
    test_y = np.asarray(test_y).astype(int)
    if len(train_x) == 0 or len(test_x) == 0:
        raise KerasSSLError("knn_accuracy needs labelled training and test embeddings.")
    num_classes = num_classes or int(max(train_y.max(), test_y.max())) + 1
    k = min(k, len(train_x))
    correct = 0
    for start in range(0, len(test_x), batch_size):
        top_sims, top = _top_k(test_x[start : start + batch_size], train_x, k, bank_chunk)
        weights = np.exp(top_sims / temperature)
        votes = np.zeros((len(top), num_classes))
        np.add.at(votes, (np.arange(len(top))[:, None], train_y[top]), weights)
        correct += int((votes.argmax(1) == test_y[start : start + batch_size]).sum())
    return correct / len(test_x)


def _top_k(queries, bank, k, chunk):
    """(similarities, indices) `[Q, k]` of the k largest `queries @ bank.T` per row, computed
    `chunk` bank rows at a time."""
    best_sims = np.empty((len(queries), 0), "float32")
    best = np.empty((len(queries), 0), np.int64)
    step = max(int(chunk), k)
    for start in range(0, len(bank), step):
        sims = queries @ bank[start : start + step].T
        sims = np.concatenate([best_sims, sims], axis=1)
        index = np.concatenate(
            [best, np.broadcast_to(np.arange(start, start + sims.shape[1] - best.shape[1]),
                                   (len(queries), sims.shape[1] - best.shape[1]))], axis=1)
        if sims.shape[1] > k:
            keep = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            sims, index = (np.take_along_axis(sims, keep, axis=1),
                           np.take_along_axis(index, keep, axis=1))
        best_sims, best = sims, index
    return best_sims, best


def linear_probe(train_x, train_y, test_x, test_y, max_iter: int = 1000) -> float:
    """Accuracy of a logistic regression trained on frozen (standardised) embeddings."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, C=1.0))
    probe.fit(np.asarray(train_x), np.asarray(train_y))
    return float(probe.score(np.asarray(test_x), np.asarray(test_y)))


def evaluate_encoder(encoder_or_path, x_train, y_train, x_test, y_test, k: int = 200,
                     batch_size: int = 256) -> dict[str, float]:
    """kNN and linear-probe accuracy of an encoder on a labelled train/test split.

    `x_train` and `x_test` are arrays, or `tf.data.Dataset`s of `(inputs, labels)` batches (then
    `y_train` and `y_test` are None), embedded batch by batch.
    """
    fn = embedding_function(encoder_or_path)  # one trace (and one SavedModel load) for both
    train, y_train = _embedded(fn, x_train, y_train, batch_size)
    test, y_test = _embedded(fn, x_test, y_test, batch_size)
    return {
        "knn_accuracy": knn_accuracy(train, y_train, test, y_test, k=k),
        "linear_probe_accuracy": linear_probe(train, y_train, test, y_test),
    }


def _embedded(fn, x, y, batch_size):
    if isinstance(x, tf.data.Dataset) and y is None:
        return embed_labelled(fn, x)
    return embed_with(fn, x, batch_size), y


def _l2_normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
