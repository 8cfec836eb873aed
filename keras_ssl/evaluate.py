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
            return lambda x: model.encoder(model.preprocess(x), training=False)
        return lambda x: model(x, training=False)
    loaded = tf.saved_model.load(str(resolve_version(encoder_or_path)))
    (name, spec), = loaded.signatures["serving_default"].structured_input_signature[1].items()

    def call(x):
        # Reached through `loaded`, which the closure keeps alive: a signature alone does not,
        # and once the loaded object is collected its variables are deleted with it.
        return loaded.signatures["serving_default"](**{name: tf.cast(x, spec.dtype)})["embeddings"]

    return call


def embed(encoder_or_path, data, batch_size: int = 256) -> np.ndarray:
    """Embeddings `[N, D]` (float32) of `data` (an array of raw inputs) by an encoder.

    `encoder_or_path` is a keras_ssl method, a Keras encoder, or an exported SavedModel folder.
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
    """Embeddings `[N, D]` (float32) of `data` by `fn` (from `embedding_function`), in batches."""
    data = np.asarray(data)
    if len(data) == 0:
        raise KerasSSLError("embed() got no examples.")
    chunks = [fn(tf.constant(data[i : i + batch_size])) for i in range(0, len(data), batch_size)]
    return np.concatenate([np.asarray(c, dtype="float32") for c in chunks])


def knn_accuracy(train_x, train_y, test_x, test_y, k: int = 200, temperature: float = 0.1,
                 num_classes: int | None = None, batch_size: int = 1024) -> float:
    """Weighted kNN accuracy on embeddings (Wu et al. 2018, the monitor of lightly and solo-learn).

    Cosine similarity to the training embeddings; each of the k nearest votes for its class with
    weight exp(similarity / temperature).
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
        sims = test_x[start : start + batch_size] @ train_x.T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        weights = np.exp(np.take_along_axis(sims, top, axis=1) / temperature)
        votes = np.zeros((len(top), num_classes))
        np.add.at(votes, (np.arange(len(top))[:, None], train_y[top]), weights)
        correct += int((votes.argmax(1) == test_y[start : start + batch_size]).sum())
    return correct / len(test_x)


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
    """kNN and linear-probe accuracy of an encoder on a labelled train/test split."""
    fn = embedding_function(encoder_or_path)  # one trace (and one SavedModel load) for both
    train = embed_with(fn, x_train, batch_size)
    test = embed_with(fn, x_test, batch_size)
    return {
        "knn_accuracy": knn_accuracy(train, y_train, test, y_test, k=k),
        "linear_probe_accuracy": linear_probe(train, y_train, test, y_test),
    }


def _l2_normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
