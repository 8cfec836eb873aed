"""Next-token prediction (GPT; Radford et al. 2018): a causal language model on token ids."""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from keras_ssl.data import text
from keras_ssl.errors import KerasSSLError
from keras_ssl.methods.mlm import MaskedLanguageModel
from keras_ssl.methods.registry import register_method

__all__ = ["NextTokenModel", "next_token_metrics", "unigram_baseline"]


def next_token_loss(token_ids, logits):
    """Mean cross-entropy and accuracy of `logits[:, t]` predicting `token_ids[:, t + 1]`, over
    every next position that is not padding (id 0), and the number of such positions.

    Args:
        token_ids: int `[N, L]`.
        logits: float `[N, L - 1, V]`: the predictions made at positions 0..L-2.

    Returns:
        `(loss, accuracy, count)`, float32 scalars (0 loss and accuracy when no target counts).
    """
    targets = tf.cast(token_ids[:, 1:], tf.int32)
    weights = tf.cast(tf.not_equal(targets, text.PAD_ID), tf.float32)
    logits = tf.cast(logits, tf.float32)
    nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)
    count = tf.reduce_sum(weights)
    denominator = tf.maximum(count, 1.0)
    loss = tf.reduce_sum(nll * weights) / denominator
    correct = tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), targets),
                      tf.float32)
    accuracy = tf.reduce_sum(correct * weights) / denominator
    return loss, accuracy, count


@keras.saving.register_keras_serializable(package="keras_ssl")
class Perplexity(keras.metrics.Metric):
    """exp of the token-weighted mean cross-entropy (nats) over the epoch."""

    def __init__(self, name="perplexity", **kwargs):
        super().__init__(name=name, **kwargs)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, loss, sample_weight=None):
        weight = tf.constant(1.0) if sample_weight is None else tf.cast(sample_weight, "float32")
        self.total.assign_add(tf.cast(loss, "float32") * weight)
        self.count.assign_add(weight)

    def result(self):
        return tf.exp(self.total / tf.maximum(self.count, 1e-12))


@register_method("next_token")
@keras.saving.register_keras_serializable(package="keras_ssl")
class NextTokenModel(MaskedLanguageModel):
    """A causal (GPT-style) language model: each position predicts the token after it.

    The encoder must be causal (position t sees tokens 0..t only): build it with
    `encoders.TransformerEncoder(..., causal=True)`; the model checks it on construction. A
    `Dense(vocab_size)` head on the per-position features predicts token t + 1 at every position
    t; the loss (cross-entropy) and the `next_token_accuracy` and `perplexity` metrics count every
    next position but padding (out-of-vocabulary targets count: predicting them is part of the
    task).

    It trains on the same int32 token ids `[N, L]` as `MaskedLanguageModel` (the same text
    sources and tokeniser, `keras_ssl.data.text.load`), and exports the same way: `text`
    (tf.string `[None]`) -> `embeddings`, the mean of the causal features over the non-padding
    tokens, the vectorizer inside the SavedModel.

    Held-out quality: `model.evaluate_next_token(ids)` gives next-token accuracy and perplexity;
    `unigram_baseline(train_ids, test_ids)` (also `NextTokenModel.unigram_baseline(data)`) gives
    those of always predicting the most frequent training token, with add-one-smoothed unigram
    probabilities.

    Args:
        encoder: a causal `keras.Model` from token ids `[N, L]` to features `[N, L, D]`.
        vocab_size: the number of token ids (padding, OOV and the mask token included).
        vectorizer: the adapted `TextVectorization` that made the ids (`text.load(...).vectorizer`).
        seed: unused by the loss (nothing random); kept for the common signature.

    Example:
    >>> import keras_ssl
    >>> data = keras_ssl.data.text.load("pydoc", vocab_size=2000, sequence_length=32, max_examples=64)
    >>> encoder = keras_ssl.encoders.TransformerEncoder(data.vocab_size, 32, embed_dim=32,
    ...     num_heads=2, num_layers=1, ff_dim=64, causal=True)
    >>> model = keras_ssl.NextTokenModel(encoder, data.vocab_size, vectorizer=data.vectorizer)
    >>> model.compile(optimizer="adam")
    >>> sorted(model.fit(data.train_dataset(16), epochs=1, verbose=0).history)
    ['loss', 'next_token_accuracy', 'perplexity']
    """

    def __init__(self, encoder, vocab_size: int, vectorizer=None, seed: int | None = None,
                 check_causal: bool = True, **kwargs):
        # The masking arguments of the masked model do not apply; drop them from old configs.
        for key in ("mask_rate",):
            kwargs.pop(key, None)
        super().__init__(encoder, vocab_size, vectorizer=vectorizer, seed=seed, **kwargs)
        length = encoder.input_shape[1]
        if length is not None and length < 2:
            raise KerasSSLError(
                f"NextTokenModel needs sequences of at least 2 tokens, the encoder takes {length}."
            )
        self.check_causal = bool(check_causal)
        if self.check_causal:
            self._check_causal()
        self.accuracy_tracker = keras.metrics.Mean(name="next_token_accuracy")
        self.perplexity_tracker = Perplexity(name="perplexity")

    def _check_causal(self) -> None:
        """Features at a position must not change when a later token does."""
        length = self.encoder.input_shape[1] or 8
        rng = np.random.default_rng(0)
        ids = rng.integers(text.FIRST_TOKEN_ID, self.vocab_size, (1, length)).astype(np.int32)
        changed = ids.copy()
        changed[0, -1] = text.FIRST_TOKEN_ID + (ids[0, -1] - text.FIRST_TOKEN_ID + 1) % max(
            1, self.vocab_size - text.FIRST_TOKEN_ID)
        both = self.encoder(np.concatenate([ids, changed]), training=False)
        before = keras.ops.convert_to_numpy(both)[:, :-1]
        if not np.allclose(before[0], before[1], atol=1e-5):
            raise KerasSSLError(
                "NextTokenModel's encoder lets positions see later tokens, so predicting the next "
                "token would be copying it. Build a causal encoder: "
                "encoders.TransformerEncoder(..., causal=True)."
            )

    def method_metrics(self):
        return [self.accuracy_tracker, self.perplexity_tracker]

    # What a registry-built encoder needs for this method (`encoders.build("transformer", ...)`).
    encoder_options = {"causal": True}

    @classmethod
    def from_data(cls, encoder, data, **options):
        """The model for `data` (a `keras_ssl.data.TextData`): its vocabulary and vectorizer."""
        return cls(encoder, vocab_size=data.vocab_size, vectorizer=data.vectorizer, **options)

    baseline_label = "unigram"

    @classmethod
    def baseline_scores(cls, data) -> dict | None:
        """Held-out next-token accuracy and perplexity of the unigram model (`unigram_baseline`),
        under the names of the model's own metrics; None without held-out text."""
        if data.x_test is None:
            return None
        baseline = unigram_baseline(data.x_train, data.x_test, vocab_size=data.vocab_size)
        return {"next_token_accuracy": baseline["accuracy"],
                "perplexity": baseline["perplexity"]}

    def next_token_logits(self, token_ids, training=False):
        """The head's logits `[N, L - 1, V]` at positions 0..L-2, predicting tokens 1..L-1."""
        features = self.encoder(tf.cast(token_ids, "int32"), training=training)
        return self.head(features[:, :-1])

    def compute_ssl_loss(self, inputs, labels, training):
        token_ids = tf.cast(inputs, "int32")
        loss, accuracy, count = next_token_loss(token_ids, self.next_token_logits(token_ids,
                                                                                  training))
        self.accuracy_tracker.update_state(accuracy, sample_weight=count)
        self.perplexity_tracker.update_state(loss, sample_weight=count)
        return loss

    # ----- held-out quality -------------------------------------------------------------------
    def evaluate_next_token(self, token_ids, batch_size: int = 256) -> dict:
        """Held-out next-token `accuracy` and `perplexity` (token-weighted, padding excluded)."""
        token_ids = np.asarray(token_ids, np.int32)
        step = tf.function(lambda ids: next_token_loss(ids, self.next_token_logits(ids)))
        total_loss = total_correct = total = 0.0
        for start in range(0, len(token_ids), batch_size):
            loss, accuracy, count = (float(v) for v in step(token_ids[start:start + batch_size]))
            total_loss += loss * count
            total_correct += accuracy * count
            total += count
        if total == 0:
            raise KerasSSLError("There are no next tokens to predict (all padding).")
        return {"accuracy": total_correct / total, "perplexity": math.exp(total_loss / total)}

    @staticmethod
    def unigram_baseline(data, test_ids=None) -> dict:
        """`unigram_baseline(data.x_train, data.x_test)` for a `TextData` (or two id arrays)."""
        if test_ids is None:
            return unigram_baseline(data.x_train, data.x_test,
                                    vocab_size=getattr(data, "vocab_size", None))
        return unigram_baseline(data, test_ids)

    def get_config(self):
        config = super().get_config()
        config.pop("mask_rate", None)
        return {**config, "check_causal": self.check_causal}


def unigram_baseline(train_ids, test_ids, vocab_size: int | None = None) -> dict:
    """Next-token accuracy and perplexity on `test_ids` of a model that ignores the context.

    It predicts the most frequent next token of `train_ids` everywhere (the accuracy), with the
    add-one-smoothed unigram probabilities of the training targets (the perplexity). Targets are
    tokens 1..L-1 of each sequence that are not padding, as in `NextTokenModel`.

    >>> train = np.array([[5, 3, 3, 4, 0]]); test = np.array([[6, 3, 4, 0, 0]])
    >>> baseline = unigram_baseline(train, test, vocab_size=7)
    >>> baseline["accuracy"], round(baseline["perplexity"], 3)
    (0.5, 3.674)
    """
    if test_ids is None:
        raise KerasSSLError("The unigram baseline needs held-out token ids (test_fraction > 0).")
    train_targets = np.asarray(train_ids)[:, 1:].ravel()
    test_targets = np.asarray(test_ids)[:, 1:].ravel()
    train_targets = train_targets[train_targets != text.PAD_ID]
    test_targets = test_targets[test_targets != text.PAD_ID]
    if not len(train_targets) or not len(test_targets):
        raise KerasSSLError("The unigram baseline needs next tokens in both splits.")
    size = int(vocab_size or max(train_targets.max(), test_targets.max()) + 1)
    counts = np.bincount(train_targets, minlength=size).astype(np.float64)
    # Add-one smoothing over the ids a model could predict (all but padding).
    smoothed = counts + 1.0
    smoothed[text.PAD_ID] = 0.0
    probabilities = smoothed / smoothed.sum()
    accuracy = float(np.mean(test_targets == int(np.argmax(counts))))
    perplexity = float(np.exp(-np.mean(np.log(probabilities[test_targets]))))
    return {"accuracy": accuracy, "perplexity": perplexity}


def next_token_metrics(model: NextTokenModel, data) -> dict:
    """Held-out `accuracy` / `perplexity` of `model` beside the unigram baseline's, as one dict:
    what a pipeline prints before and after training."""
    quality = model.evaluate_next_token(data.x_test)
    baseline = unigram_baseline(data.x_train, data.x_test, vocab_size=data.vocab_size)
    return {
        "next_token_accuracy": quality["accuracy"],
        "perplexity": quality["perplexity"],
        "unigram_accuracy": baseline["accuracy"],
        "unigram_perplexity": baseline["perplexity"],
    }
