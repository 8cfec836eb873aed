"""Masked language modelling (BERT; Devlin et al. 2019): predict hidden tokens from their context."""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from keras_ssl import losses, pretext
from keras_ssl.data import text
from keras_ssl.encoders import MaskedMeanPooling
from keras_ssl.errors import KerasSSLError
from keras_ssl.methods.base import SelfSupervisedModel
from keras_ssl.methods.registry import register_method
from keras_ssl.validate import check_fraction, check_int


@register_method("mlm")
@keras.saving.register_keras_serializable(package="keras_ssl")
class MaskedLanguageModel(SelfSupervisedModel):
    """A masked language model: a sequence encoder learns to fill in corrupted tokens.

    Each step corrupts every sequence of the batch in the graph (`pretext.mask_tokens`): about
    `mask_rate` of its ordinary tokens are chosen (never padding or special ids); of those, 80%
    become `mask_token_id`, 10% a random token, 10% stay. A `Dense(vocab_size)` head on the
    encoder's per-position features predicts the original tokens; the loss and
    `masked_token_accuracy` count the chosen positions only (`losses.masked_token_loss`).

    The model trains on int32 token ids `[N, L]` (text is turned into ids in the input pipeline:
    string ops do not compile with XLA). Called on ids or, when it has a `vectorizer`, on strings,
    it returns one embedding per sequence: the mean of the encoder's features over the
    non-padding positions. That pooled embedding is what `export_encoder` writes, with the
    vectorizer inside, so the SavedModel takes raw strings (`text`, tf.string `[None]`).

    Args:
        encoder: a `keras.Model` from token ids `[N, L]` to per-position features `[N, L, D]`
            (`encoders.TransformerEncoder`, `encoders.LSTMEncoder`, or your own).
        vocab_size: the number of token ids (padding, OOV and the mask token included).
        mask_rate: fraction of the ordinary tokens of each sequence to predict (BERT: 0.15).
        mask_token_id: the id of the mask token (`text.MASK_TOKEN_ID`).
        first_token_id: the smallest ordinary id; lower ids are special and never masked
            (`text.FIRST_TOKEN_ID`: padding 0, OOV 1, mask 2).
        vectorizer: the adapted `keras.layers.TextVectorization` that made the ids (e.g.
            `text.load(...).vectorizer`); needed to embed or export raw strings.
        seed: seed of the masking.

    Example:
    >>> import keras_ssl
    >>> data = keras_ssl.data.text.load("pydoc", vocab_size=2000, sequence_length=32, max_examples=64)
    >>> encoder = keras_ssl.encoders.TransformerEncoder(data.vocab_size, 32, embed_dim=32,
    ...                                                 num_heads=2, num_layers=1, ff_dim=64)
    >>> model = keras_ssl.MaskedLanguageModel(encoder, data.vocab_size,
    ...                                       vectorizer=data.vectorizer)
    >>> model.compile(optimizer="adam")
    >>> history = model.fit(data.train_dataset(16), epochs=1, verbose=0)
    >>> sorted(history.history)
    ['loss', 'masked_token_accuracy']
    >>> import tensorflow as tf
    >>> model(tf.constant(["The if statement"])).shape
    TensorShape([1, 32])
    """

    input_kinds = ("text",)
    encoder_output_rank = 3

    def __init__(
        self,
        encoder,
        vocab_size: int,
        mask_rate: float = 0.15,
        mask_token_id: int = text.MASK_TOKEN_ID,
        first_token_id: int = text.FIRST_TOKEN_ID,
        vectorizer=None,
        seed: int | None = None,
        **kwargs,
    ):
        if kwargs.get("probe_classes") is not None:
            raise KerasSSLError(
                "MaskedLanguageModel has no online linear probe (text comes without class "
                "labels); leave probe_classes=None."
            )
        super().__init__(encoder, seed=seed, **kwargs)
        if len(encoder.inputs) != 1 or len(encoder.input_shape) != 2:
            raise KerasSSLError(
                f"MaskedLanguageModel's encoder must take token ids [batch, length], but its input "
                f"shape is {encoder.input_shape}. Use encoders.TransformerEncoder or LSTMEncoder."
            )
        check_int(vocab_size, "vocab_size", least=text.MIN_VOCAB_SIZE)
        check_int(first_token_id, "first_token_id", least=1)
        check_int(mask_token_id, "mask_token_id", least=0)
        if not first_token_id < vocab_size or not mask_token_id < vocab_size:
            raise KerasSSLError(
                f"mask_token_id={mask_token_id} and first_token_id={first_token_id} must be ids "
                f"of the vocabulary, below vocab_size={vocab_size}."
            )
        check_fraction(mask_rate, "mask_rate", "the fraction of tokens to predict; BERT uses 0.15")
        self.vocab_size = int(vocab_size)
        self.mask_rate = float(mask_rate)
        self.mask_token_id = int(mask_token_id)
        self.first_token_id = int(first_token_id)
        # Kept out of Keras' layer tracking: Keras turns XLA off for a model that holds a
        # TextVectorization (its string ops do not compile), and training never needs it. The
        # config (vocabulary included, which an adapted layer's own config lacks) serializes it.
        self.vectorizer_config = (
            None if vectorizer is None else self._vectorizer_config(vectorizer)
        )
        object.__setattr__(self, "_vectorizer", vectorizer)
        self.head = keras.layers.Dense(self.vocab_size, name="token_logits")
        # Built now: variables must exist before fit traces the step.
        self.head.build((None, None, self.feature_dim))
        self.pooling = MaskedMeanPooling(name="pooling")
        self.accuracy_tracker = keras.metrics.Mean(name="masked_token_accuracy")

    @classmethod
    def from_data(cls, encoder, data, **options):
        """The model for `data` (a `keras_ssl.data.TextData`): its vocabulary and vectorizer."""
        return cls(encoder, vocab_size=data.vocab_size, mask_token_id=data.mask_token_id,
                   first_token_id=data.first_token_id, vectorizer=data.vectorizer, **options)

    baseline_label = "most frequent token"

    @classmethod
    def baseline_scores(cls, data) -> dict | None:
        """Masked-token accuracy of always guessing the training text's most frequent word."""
        if data.x_test is None:
            return None
        train = data.x_train[data.x_train >= data.first_token_id]
        held_out = data.x_test[data.x_test >= data.first_token_id]
        hits = np.mean(held_out == np.bincount(train).argmax()) if held_out.size else 0.0
        return {"masked_token_accuracy": float(hits)}

    def _vectorizer_config(self, vectorizer) -> dict:
        if not isinstance(vectorizer, keras.layers.TextVectorization):
            raise KerasSSLError(
                f"vectorizer must be a keras.layers.TextVectorization (e.g. text.load(...)"
                f".vectorizer), got {type(vectorizer).__name__}."
            )
        config = vectorizer.get_config()
        vocabulary = [str(token) for token in vectorizer.get_vocabulary()]
        if config.get("output_mode") != "int" or not config.get("output_sequence_length"):
            raise KerasSSLError(
                "The vectorizer must output token ids of a fixed length: build it with "
                "output_mode='int' and output_sequence_length (text.make_vectorizer does)."
            )
        if len(vocabulary) != self.vocab_size:
            raise KerasSSLError(
                f"vocab_size={self.vocab_size}, but the vectorizer has {len(vocabulary)} token ids. "
                "Pass vocab_size=vectorizer.vocabulary_size() (data.vocab_size)."
            )
        if vocabulary[self.mask_token_id] != text.MASK_TOKEN:
            raise KerasSSLError(
                f"Token {self.mask_token_id} of the vectorizer is {vocabulary[self.mask_token_id]!r}, "
                f"not the mask token {text.MASK_TOKEN!r}. Build the vectorizer with "
                "keras_ssl.data.text.make_vectorizer (it reserves id 2 for the mask), or pass the "
                "mask token's id as mask_token_id."
            )
        length = self.encoder.input_shape[1]
        if length is not None and length != config["output_sequence_length"]:
            raise KerasSSLError(
                f"The vectorizer makes sequences of {config['output_sequence_length']} ids, but "
                f"the encoder takes {length}. Build both with the same sequence length."
            )
        keep = ("standardize", "split", "ngrams", "output_sequence_length", "encoding")
        return {**{key: config[key] for key in keep if key in config}, "vocabulary": vocabulary}

    @property
    def vectorizer(self) -> keras.layers.TextVectorization | None:
        """The `TextVectorization` that turns strings into this model's token ids, or None."""
        return self._vectorizer

    def _fresh_vectorizer(self) -> keras.layers.TextVectorization:
        config = dict(self.vectorizer_config)
        return keras.layers.TextVectorization(
            vocabulary=list(config.pop("vocabulary")), name="text_vectorization", **config
        )

    def method_metrics(self):
        return [self.accuracy_tracker]

    @property
    def input_kind(self) -> str:
        return "text"

    def compute_ssl_loss(self, inputs, labels, training):
        token_ids = tf.cast(inputs, "int32")
        corrupted, mask = pretext.mask_tokens(
            token_ids,
            self.mask_rate,
            mask_token_id=self.mask_token_id,
            vocab_size=self.vocab_size,
            first_token_id=self.first_token_id,
            seed=self.seed_generator.next(),
        )
        features = self.encoder(corrupted, training=training)
        loss, accuracy = self.prediction_loss(features, token_ids, mask)
        # Weighted by the number of masked tokens: the epoch's accuracy is per token.
        self.accuracy_tracker.update_state(accuracy, sample_weight=tf.reduce_sum(mask))
        return loss

    def prediction_loss(self, features, token_ids, mask):
        """`losses.masked_token_loss` of the head's predictions, computed at masked positions only.

        The vocabulary head is the costliest layer (`L * D * vocab_size` per sequence), and only
        the masked positions count: as BERT does, gather a few more positions per sequence than
        it can have masked tokens (`pretext.mask_tokens` masks at most `ceil(mask_rate * L)`;
        one more slot absorbs float rounding) and predict there alone (static shapes; filler
        slots keep mask 0). The loss is the same as on all positions, for a few times less
        compute.
        """
        length = features.shape[1]
        if length is None:
            return losses.masked_token_loss(token_ids, self.head(features), mask,
                                            return_accuracy=True)
        slots = min(length, math.ceil(self.mask_rate * length) + 1)
        # top_k of a 0/1 mask: every masked position (at most `slots` per sequence), then fillers.
        positions = tf.math.top_k(mask, k=slots, sorted=False).indices
        logits = self.head(tf.gather(features, positions, batch_dims=1))
        return losses.masked_token_loss(
            tf.gather(token_ids, positions, batch_dims=1),
            logits,
            tf.gather(mask, positions, batch_dims=1),
            return_accuracy=True,
        )

    # ----- inference --------------------------------------------------------------------------
    def preprocess(self, inputs):
        """Strings -> token ids with the vectorizer; token ids -> int32."""
        inputs = tf.convert_to_tensor(inputs)
        if inputs.dtype == tf.string:
            vectorizer = self.vectorizer
            if vectorizer is None:
                raise KerasSSLError(
                    "This MaskedLanguageModel has no vectorizer to turn strings into token ids: "
                    "build it with vectorizer=data.vectorizer (keras_ssl.data.text.load), or pass ids."
                )
            inputs = vectorizer(inputs)
        return tf.cast(inputs, "int32")

    def call(self, inputs, training=False):
        """One embedding per sequence: the encoder's features averaged over non-padding tokens."""
        token_ids = self.preprocess(inputs)
        return self.pooling([self.encoder(token_ids, training=training), token_ids])

    def check_inputs(self, inputs, labels) -> None:
        shape, dtype = inputs.shape, tf.as_dtype(inputs.dtype)
        if dtype == tf.string:
            raise KerasSSLError(
                "MaskedLanguageModel trains on token ids [N, L], not strings: turn the text into "
                "ids in the input pipeline (keras_ssl.data.text.load(...).train_dataset(batch_size)), "
                "since string ops do not compile with XLA."
            )
        if shape.rank != 2 or not dtype.is_integer:
            hint = " These look like images: use an image method." if shape.rank == 4 else ""
            raise KerasSSLError(
                f"MaskedLanguageModel takes batches of integer token ids [N, L], got shape {shape} "
                f"and dtype {dtype.name}.{hint} Load text with keras_ssl.data.text.load."
            )
        length = self.encoder.input_shape[1]
        if length is not None and shape[1] is not None and shape[1] != length:
            raise KerasSSLError(
                f"The encoder takes sequences of {length} token ids, but the batches have "
                f"{shape[1]}. Load the text with sequence_length={length}."
            )

    # ----- export -----------------------------------------------------------------------------
    def serving_model(self) -> keras.Model:
        """A functional model from strings `[N]` to pooled embeddings `[N, D]`, vectorizer inside."""
        vectorizer = self.vectorizer
        if vectorizer is None:
            raise KerasSSLError(
                "Exporting a MaskedLanguageModel needs its vectorizer, so that the SavedModel "
                "takes raw strings: build the model with vectorizer=data.vectorizer "
                "(keras_ssl.data.text.load)."
            )
        strings = keras.Input(shape=(), dtype="string", name="text")
        token_ids = vectorizer(strings)
        features = self.encoder(token_ids)
        embeddings = MaskedMeanPooling(name="pooling")([features, token_ids])
        return keras.Model(strings, embeddings, name=f"{self.encoder.name}_serving")

    # ----- serialization ----------------------------------------------------------------------
    def get_config(self):
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "mask_rate": self.mask_rate,
            "mask_token_id": self.mask_token_id,
            "first_token_id": self.first_token_id,
            "vectorizer": (
                None if self.vectorizer_config is None
                else keras.saving.serialize_keras_object(self._fresh_vectorizer())
            ),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if config.get("vectorizer") is not None:
            config["vectorizer"] = keras.saving.deserialize_keras_object(config["vectorizer"])
        return super().from_config(config)

