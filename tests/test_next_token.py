"""Next-token prediction: the causal mask, the loss, the unigram baseline, pydoc, export."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_ssl
from keras_ssl import encoders
from keras_ssl.data import text
from keras_ssl.errors import KerasSSLError
from keras_ssl.methods.next_token import (
    NextTokenModel,
    next_token_loss,
    next_token_metrics,
    unigram_baseline,
)


def _tiny(vocab=50, length=12, causal=True, **kwargs):
    options = dict(embed_dim=16, num_heads=2, num_layers=1, ff_dim=32, dropout=0.0)
    options.update(kwargs)
    return encoders.TransformerEncoder(vocab, length, causal=causal, **options)


def test_causal_encoder_ignores_later_tokens_and_default_still_sees_them():
    ids = np.random.default_rng(0).integers(3, 50, (2, 12)).astype("int32")
    ids[1, 7:] = np.random.default_rng(1).integers(3, 50, 5)  # change only positions 7..11
    ids[1, :7] = ids[0, :7]
    causal = _tiny()(ids).numpy()
    np.testing.assert_allclose(causal[0, :7], causal[1, :7], atol=1e-5)
    assert not np.allclose(causal[0, 7:], causal[1, 7:])
    bidirectional = _tiny(causal=False)(ids).numpy()
    assert not np.allclose(bidirectional[0, :7], bidirectional[1, :7])


def test_next_token_model_refuses_an_encoder_that_sees_the_future():
    with pytest.raises(KerasSSLError, match="causal=True"):
        NextTokenModel(_tiny(causal=False), 50)


def test_next_token_loss_values_skip_padding_and_pass_gradients():
    rng = np.random.default_rng(0)
    ids = np.array([[5, 6, 7, 0, 0], [3, 4, 1, 8, 9]], np.int32)
    logits = tf.Variable(rng.normal(size=(2, 4, 10)).astype("float32"))
    with tf.GradientTape() as tape:
        loss, accuracy, count = next_token_loss(ids, logits)
    targets = ids[:, 1:]
    log_probs = logits.numpy() - np.log(np.exp(logits.numpy()).sum(-1, keepdims=True))
    keep = targets != 0
    picked = np.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
    assert float(count) == keep.sum() == 6
    assert float(loss) == pytest.approx(-picked[keep].mean(), rel=1e-5)
    hits = (logits.numpy().argmax(-1) == targets)[keep].mean()
    assert float(accuracy) == pytest.approx(hits)
    grad = tape.gradient(loss, logits).numpy()
    assert np.all(grad[0, 2:] == 0) and np.abs(grad[1]).sum() > 0  # padding targets: no gradient
    # Padding only: a zero loss, not NaN.
    zero, _, none = next_token_loss(np.zeros((1, 4), np.int32), tf.zeros((1, 3, 10)))
    assert float(zero) == 0.0 and float(none) == 0.0


def test_unigram_baseline_by_hand():
    train = np.array([[9, 3, 3, 3, 4], [9, 4, 0, 0, 0]])
    test = np.array([[9, 3, 4, 5, 0]])
    baseline = unigram_baseline(train, test, vocab_size=6)
    assert baseline["accuracy"] == pytest.approx(1 / 3)  # predicts 3 everywhere
    # add-one counts over ids 1..5: [1, 1, 4, 3, 1] / 10
    expected = np.exp(-np.mean(np.log([0.4, 0.3, 0.1])))
    assert baseline["perplexity"] == pytest.approx(expected)
    with pytest.raises(KerasSSLError, match="held-out"):
        unigram_baseline(train, None)


@pytest.fixture(scope="module")
def pydoc_1500():
    return text.load("pydoc", vocab_size=2000, sequence_length=32, max_examples=1500, seed=0)


def test_next_token_beats_the_unigram_baseline_on_pydoc(pydoc_1500):
    data = pydoc_1500
    keras.utils.set_random_seed(0)
    encoder = _tiny(data.vocab_size, 32, embed_dim=32, ff_dim=64)
    model = NextTokenModel(encoder, data.vocab_size, vectorizer=data.vectorizer)
    model.compile(optimizer=keras.optimizers.Adam(5e-3), jit_compile=False)
    before = next_token_metrics(model, data)
    history = model.fit(data.train_dataset(32), epochs=3, verbose=0).history
    after = next_token_metrics(model, data)
    assert sorted(history) == ["loss", "next_token_accuracy", "perplexity"]
    assert history["perplexity"][-1] == pytest.approx(np.exp(history["loss"][-1]), rel=0.1)
    assert before["next_token_accuracy"] < after["unigram_accuracy"]
    # Measured: 0.15 against the baseline's 0.07 (the full pydoc run is in docs/series.md).
    assert after["next_token_accuracy"] > after["unigram_accuracy"] + 0.04
    assert after["perplexity"] < after["unigram_perplexity"]


def test_next_token_exports_text_to_embeddings_and_round_trips(pydoc_1500, tmp_path):
    data = pydoc_1500
    model = NextTokenModel(_tiny(data.vocab_size, 32), data.vocab_size,
                           vectorizer=data.vectorizer)
    assert keras_ssl.METHODS["next_token"][0] is NextTokenModel
    restored = NextTokenModel.from_config(model.get_config())
    assert restored.vocab_size == model.vocab_size and "mask_rate" not in model.get_config()
    version = keras_ssl.export_encoder(model, tmp_path / "next_token")
    signature = tf.saved_model.load(str(version)).signatures["serving_default"]
    (name, spec), = signature.structured_input_signature[1].items()
    assert name == "text" and spec.dtype == tf.string
    sentences = tf.constant(["The if statement", "a for loop"])
    embeddings = signature(text=sentences)["embeddings"].numpy()
    np.testing.assert_allclose(embeddings, model(sentences).numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_next_token_step_compiles_with_xla(pydoc_1500):
    data = pydoc_1500
    model = NextTokenModel(_tiny(data.vocab_size, 32), data.vocab_size)
    model.compile(optimizer="adam", jit_compile=True)
    history = model.fit(data.x_train[:64], batch_size=32, epochs=2, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]


def test_built_from_data_with_a_registry_encoder_and_a_unigram_baseline(pydoc_1500):
    data = pydoc_1500
    encoder = encoders.build("transformer", data.input_shape, width=32, kind="text",
                             vocab_size=data.vocab_size, **NextTokenModel.encoder_options)
    model = NextTokenModel.from_data(encoder, data)
    assert model.vocab_size == data.vocab_size and model.vectorizer is data.vectorizer
    baseline = NextTokenModel.baseline_scores(data)
    assert set(baseline) == {"next_token_accuracy", "perplexity"}  # the model's metric names
    assert 0.03 < baseline["next_token_accuracy"] < 0.2 and baseline["perplexity"] > 50
    with pytest.raises(KerasSSLError, match="causal=True"):
        NextTokenModel.from_data(encoders.build("transformer", data.input_shape, width=32,
                                                kind="text", vocab_size=data.vocab_size), data)
