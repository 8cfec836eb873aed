"""Masked language modelling: masking statistics, the loss, text loading, encoders, export, CLI."""

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_ssl
from keras_ssl import encoders, losses, pretext
from keras_ssl.cli import main
from keras_ssl.data import text
from keras_ssl.errors import KerasSSLError
from keras_ssl.methods.mlm import MaskedLanguageModel

VOCAB = 1000
FIRST = text.FIRST_TOKEN_ID
MASK = text.MASK_TOKEN_ID


def _token_batch(n=4000, length=64, seed=0):
    """Sequences of random lengths: ordinary ids, a few OOV ids, then padding."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((n, length), np.int32)
    for i, size in enumerate(rng.integers(1, length + 1, n)):
        ids[i, :size] = rng.integers(FIRST, VOCAB, size)
    ids[(rng.random(ids.shape) < 0.03) & (ids > 0)] = text.OOV_ID
    return ids


@pytest.fixture(scope="module")
def pydoc_small():
    return text.load("pydoc", vocab_size=2000, sequence_length=32, max_examples=600, seed=0)


def _tiny_transformer(data, **kwargs):
    options = dict(embed_dim=32, num_heads=2, num_layers=1, ff_dim=64, dropout=0.0)
    options.update(kwargs)
    return encoders.TransformerEncoder(data.vocab_size, data.sequence_length, **options)


# ----- masking --------------------------------------------------------------------------------
def test_masking_statistics_per_sequence():
    ids = _token_batch()
    corrupted, mask = pretext.mask_tokens(ids, 0.15, mask_token_id=MASK, vocab_size=VOCAB,
                                          first_token_id=FIRST, seed=3)
    corrupted, mask = corrupted.numpy(), mask.numpy().astype(bool)
    eligible = ids >= FIRST
    assert (ids == 1).sum() > 1000 and (ids == 0).sum() > 10000
    # Padding and special ids are never chosen.
    assert not mask[~eligible].any()
    # The rate over many sequences, and per sequence within one token of mask_rate * n.
    assert abs(mask.sum() / eligible.sum() - 0.15) < 0.003
    per_sequence = mask.sum(axis=1)
    assert np.all(np.abs(per_sequence - 0.15 * eligible.sum(axis=1)) < 1)
    # 80% [MASK], 10% random ordinary token, 10% unchanged.
    chosen_ids, chosen_out = ids[mask], corrupted[mask]
    became_mask = chosen_out == MASK
    unchanged = chosen_out == chosen_ids
    random = ~became_mask & ~unchanged
    assert abs(became_mask.mean() - 0.8) < 0.015
    assert abs(unchanged.mean() - 0.1) < 0.01  # a random draw equal to the original is 1/997
    assert abs(random.mean() - 0.1) < 0.01
    assert chosen_out[random].min() >= FIRST and chosen_out[random].max() < VOCAB
    # Nothing else changes.
    np.testing.assert_array_equal(corrupted[~mask], ids[~mask])


def test_masking_differs_per_sequence_and_is_reproducible_under_xla():
    ids = np.tile(np.arange(FIRST, FIRST + 40, dtype=np.int32), (64, 1))
    run = tf.function(
        lambda x, seed: pretext.mask_tokens(x, 0.15, mask_token_id=MASK, vocab_size=VOCAB,
                                            first_token_id=FIRST, seed=seed),
        jit_compile=True,
    )
    seed = tf.constant([7, 1], tf.int64)
    xla_ids, xla_mask = run(ids, seed)
    eager_ids, eager_mask = pretext.mask_tokens(ids, 0.15, mask_token_id=MASK, vocab_size=VOCAB,
                                                first_token_id=FIRST, seed=seed)
    np.testing.assert_array_equal(xla_ids.numpy(), eager_ids.numpy())
    np.testing.assert_array_equal(xla_mask.numpy(), eager_mask.numpy())
    # 64 copies of one sequence get (almost all) different masks: randomness is per sequence.
    assert len({row.tobytes() for row in xla_mask.numpy()}) > 60
    other = run(ids, tf.constant([8, 1], tf.int64))[1].numpy()
    assert not np.array_equal(other, xla_mask.numpy())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(mask_rate=0.0), "strictly between 0 and 1"),
        (dict(mask_rate=1.5), "strictly between 0 and 1"),
        (dict(first_token_id=0), "at least 1"),
        (dict(mask_token_id=VOCAB), "outside the vocabulary"),
    ],
)
def test_mask_tokens_rejects_bad_settings(kwargs, message):
    options = dict(mask_rate=0.15, mask_token_id=MASK, vocab_size=VOCAB, first_token_id=FIRST)
    options.update(kwargs)
    rate = options.pop("mask_rate")
    with pytest.raises(KerasSSLError, match=message):
        pretext.mask_tokens(np.ones((2, 8), "int32") * 5, rate, **options)
    with pytest.raises(KerasSSLError, match="token ids"):
        pretext.mask_tokens(np.ones((2, 8, 1), "float32"), 0.15, mask_token_id=MASK,
                            vocab_size=VOCAB, first_token_id=FIRST)


# ----- the loss ---------------------------------------------------------------------------------
def test_loss_counts_masked_positions_only():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 50, (3, 7))
    mask = (rng.random((3, 7)) < 0.4).astype("float32")
    logits = tf.Variable(rng.standard_normal((3, 7, 50)).astype("float32"))
    with tf.GradientTape() as tape:
        loss, accuracy = losses.masked_token_loss(labels, logits, mask, return_accuracy=True)
    gradient = tape.gradient(loss, logits).numpy()
    assert np.all(gradient[mask == 0] == 0.0)
    assert np.all(np.abs(gradient[mask == 1]).sum(axis=-1) > 0)
    values = logits.numpy()
    log_softmax = values - np.log(np.exp(values).sum(-1, keepdims=True))
    picked = np.take_along_axis(log_softmax, labels[..., None], -1)[..., 0]
    np.testing.assert_allclose(loss.numpy(), -(picked * mask).sum() / mask.sum(), rtol=1e-5)
    hits = (values.argmax(-1) == labels) * mask
    np.testing.assert_allclose(accuracy.numpy(), hits.sum() / mask.sum(), rtol=1e-6)


def test_gathered_prediction_loss_equals_the_loss_on_all_positions(pydoc_small):
    model = MaskedLanguageModel(_tiny_transformer(pydoc_small), pydoc_small.vocab_size, seed=0)
    ids = tf.constant(pydoc_small.x_train[:16])
    _, mask = pretext.mask_tokens(ids, 0.15, mask_token_id=MASK, vocab_size=model.vocab_size,
                                  first_token_id=FIRST, seed=1)
    features = model.encoder(ids)
    gathered = model.prediction_loss(features, ids, mask)
    full = losses.masked_token_loss(ids, model.head(features), mask, return_accuracy=True)
    assert float(tf.reduce_sum(mask)) > 20
    np.testing.assert_allclose([t.numpy() for t in gathered], [t.numpy() for t in full],
                               rtol=1e-5)


# ----- encoders ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["transformer", "lstm"])
def test_text_encoders_ignore_padding(kind):
    if kind == "transformer":
        encoder = encoders.TransformerEncoder(100, 12, embed_dim=16, num_heads=2, num_layers=2,
                                              ff_dim=32, dropout=0.0)
    else:
        encoder = encoders.LSTMEncoder(100, embed_dim=16, units=8, sequence_length=12)
    ids = np.zeros((2, 12), "int32")
    ids[0, :5], ids[1, :9] = np.arange(10, 15), np.arange(20, 29)
    before = encoder(ids).numpy()
    assert before.shape == (2, 12, 16)
    # What the padding id embeds to must not reach the tokens: attention / recurrence skip it.
    table = encoder.get_layer("token_embedding").embeddings
    table.assign(tf.tensor_scatter_nd_update(table, [[0]], tf.fill([1, 16], 5.0)))
    after = encoder(ids).numpy()
    np.testing.assert_allclose(after[0, :5], before[0, :5], atol=1e-5)
    np.testing.assert_allclose(after[1, :9], before[1, :9], atol=1e-5)


def test_masked_mean_pooling_averages_real_tokens():
    features = np.arange(24, dtype="float32").reshape(2, 4, 3)
    ids = np.array([[5, 6, 0, 0], [0, 0, 0, 0]])
    pooled = encoders.MaskedMeanPooling()([features, ids]).numpy()
    np.testing.assert_allclose(pooled[0], features[0, :2].mean(0))
    np.testing.assert_allclose(pooled[1], 0.0)


# ----- text sources -------------------------------------------------------------------------------
def test_load_txt_file_folder_and_strings(tmp_path):
    words = [f"word{i}" for i in range(40)]
    rng = np.random.default_rng(0)
    documents = [
        " ".join(rng.choice(words, 30)) + ". " + " ".join(rng.choice(words, 12)) + "."
        for _ in range(30)
    ]
    (tmp_path / "one.txt").write_text("\n\n".join(documents[:15]))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "two.txt").write_text("\n\n".join(documents[15:]))
    (tmp_path / "ignored.md").write_text("not read " * 50)
    single = text.load(str(tmp_path / "one.txt"), sequence_length=16, test_fraction=0.2)
    folder = text.load(str(tmp_path), sequence_length=16, test_fraction=0.2)
    strings = text.load(documents, sequence_length=16, test_fraction=0.2)
    assert folder.name == tmp_path.name and single.name == "one.txt"
    assert len(folder.x_train) + len(folder.x_test) == len(strings.x_train) + len(strings.x_test)
    assert len(folder.x_train) > len(single.x_train)
    for data in (single, folder, strings):
        assert data.kind == "text" and not data.has_labels
        assert data.x_train.dtype == np.int32 and data.x_train.shape[1] == 16
        assert [str(t) for t in data.vectorizer.get_vocabulary()[:3]] == ["", "[UNK]", "[mask]"]
        assert "notread" not in data.vectorizer.get_vocabulary()
        # Held-out examples are other examples, and no example was cut.
        assert not set(data.texts_train) & set(data.texts_test)
        assert ((data.x_train != 0).sum(1) <= 16).all()
        assert (data.x_train[:, :2] >= FIRST).all()  # [mask] never comes out of real text
    batch = next(iter(folder.train_dataset(8)))
    assert batch.shape == (8, 16) and batch.dtype == tf.int32


def test_load_pydoc_and_max_examples():
    full = text.load("pydoc")
    small = text.load("pydoc", max_examples=100, vocab_size=500, sequence_length=32)
    assert len(full.x_train) > 1000 and len(full.x_test) > 100
    assert full.vocab_size <= 5000 and full.sequence_length == 64
    assert len(small.x_train) == 100 and 5 <= len(small.x_test) <= 20
    assert small.vocab_size == 500


@pytest.mark.parametrize(
    "source, kwargs, message",
    [
        ([""], {}, "the text is empty"),
        (["   \n\n  "], {}, "the text is empty"),
        (["a b a b the a b c"] * 20, {}, "only 4 distinct word"),
        (["word" + str(i) for i in range(100)], dict(vocab_size=4), "vocab_size must be"),
        ("digits", {}, "holds images, not text"),
        ("./no/such/file.txt", {}, "No such file or folder"),
    ],
)
def test_text_errors_say_how_to_fix(source, kwargs, message):
    with pytest.raises(KerasSSLError, match=message):
        text.load(source, **kwargs)


def test_empty_file_and_folder_without_text(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(KerasSSLError, match="the text is empty"):
        text.load(str(tmp_path / "empty.txt"))
    (tmp_path / "images").mkdir()
    with pytest.raises(KerasSSLError, match="No .txt files"):
        text.load(str(tmp_path / "images"))


def test_tfds_text_through_the_mock_and_not_prepared_fails_fast(tmp_path):
    from unittest import mock

    import tensorflow_datasets as tfds

    with pytest.raises(KerasSSLError, match="not prepared"):
        text.load("imdb_reviews", data_dir=str(tmp_path))
    with tfds.testing.mock_data(num_examples=12), mock.patch.object(
        tfds.core.DatasetBuilder, "is_prepared", lambda self: True
    ):
        data = text.load("imdb_reviews", vocab_size=300, sequence_length=16)
    assert data.name == "imdb_reviews" and data.x_test is not None
    assert data.x_train.shape[1] == 16 and data.vocab_size > 10


# ----- the model ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_text():
    """A small vocabulary and short sequences: XLA compiles the step in seconds."""
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(40)]
    documents = [" ".join(rng.choice(words, 60)) for _ in range(10)]
    return text.load(documents, sequence_length=12, test_fraction=0.1)


@pytest.mark.slow  # XLA is off for text on CPU (--xla auto); next_token's XLA step stays default
@pytest.mark.parametrize("kind", ["transformer", "lstm"])
def test_the_step_compiles_with_xla(tiny_text, kind):
    if kind == "transformer":
        encoder = _tiny_transformer(tiny_text, embed_dim=8, ff_dim=16)
    else:
        encoder = encoders.LSTMEncoder(tiny_text.vocab_size, embed_dim=8, units=4,
                                       sequence_length=tiny_text.sequence_length)
    # With its vectorizer: a model holding a TextVectorization layer would silently lose XLA.
    model = MaskedLanguageModel(encoder, tiny_text.vocab_size, vectorizer=tiny_text.vectorizer,
                                seed=0)
    model.compile(optimizer="adam", jit_compile=True)
    history = model.fit(tiny_text.train_dataset(8).take(2), epochs=1, verbose=0)
    assert model.jit_compile is True
    assert sorted(history.history) == ["loss", "masked_token_accuracy"]
    assert np.isfinite(history.history["loss"][0])


def test_model_errors_say_how_to_fix(tiny_text):
    def model(**kwargs):
        return MaskedLanguageModel(_tiny_transformer(tiny_text, embed_dim=8, ff_dim=16),
                                   tiny_text.vocab_size, **kwargs)

    for data, message in [
        (tf.data.Dataset.from_tensor_slices(["a b c"] * 4).batch(2), "not strings"),
        (np.zeros((4, 8, 8, 1), "uint8"), "look like images"),
        (np.ones((4, 16), "int32") * 5, "sequences of 12 token ids"),
    ]:
        fresh = model()
        fresh.compile(optimizer="adam")
        with pytest.raises(KerasSSLError, match=message):
            fresh.fit(data, verbose=0)
    with pytest.raises(KerasSSLError, match=r"\[batch, length, features\]"):
        MaskedLanguageModel(encoders.MLP(32), 100)
    with pytest.raises(KerasSSLError, match="vectorizer has"):
        MaskedLanguageModel(_tiny_transformer(tiny_text), 100, vectorizer=tiny_text.vectorizer)
    with pytest.raises(KerasSSLError, match="needs its vectorizer"):
        model().serving_model()
    with pytest.raises(KerasSSLError, match="mask_rate must be a number strictly between"):
        model(mask_rate=0.0)
    with pytest.raises(KerasSSLError, match="no vectorizer to turn strings"):
        model()(tf.constant(["some text"]))


def test_config_round_trip_keeps_the_vocabulary(pydoc_small):
    model = MaskedLanguageModel(_tiny_transformer(pydoc_small), pydoc_small.vocab_size,
                                mask_rate=0.2, vectorizer=pydoc_small.vectorizer, seed=4)
    clone = MaskedLanguageModel.from_config(model.get_config())
    assert clone.mask_rate == 0.2 and clone.vocab_size == model.vocab_size
    sentences = tf.constant(["The if statement is used for conditional execution", "zzz"])
    np.testing.assert_array_equal(clone.preprocess(sentences), model.preprocess(sentences))


def test_short_fit_beats_random_init_on_masked_tokens(pydoc_small):
    keras.utils.set_random_seed(0)
    model = MaskedLanguageModel(_tiny_transformer(pydoc_small), pydoc_small.vocab_size, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    held_out = pydoc_small.test_dataset(64).repeat(4)
    before = model.evaluate(held_out, verbose=0, return_dict=True)["masked_token_accuracy"]
    model.fit(pydoc_small.train_dataset(32), epochs=3, verbose=0)
    after = model.evaluate(held_out, verbose=0, return_dict=True)["masked_token_accuracy"]
    assert before < 0.01
    assert after > before + 0.03, (before, after)


@pytest.mark.slow
def test_fit_on_pydoc_beats_guessing_the_most_frequent_word():
    """Past the unigram guess (about 7.6% on pydoc): the encoder has learnt to use context."""
    keras.utils.set_random_seed(0)
    data = text.load("pydoc")
    model = MaskedLanguageModel(encoders.build("transformer", (64,), width=64, kind="text", vocab_size=data.vocab_size),
                                data.vocab_size, seed=0)
    steps = len(data.x_train) // 32
    model.compile(optimizer=keras_ssl.training.default_optimizer(2e-3, 60 * steps))
    model.fit(data.train_dataset(32), epochs=60, verbose=0)
    held_out = data.test_dataset().repeat(4)
    after = model.evaluate(held_out, verbose=0, return_dict=True)["masked_token_accuracy"]
    ordinary = data.x_test[data.x_test >= FIRST]
    most_frequent = np.bincount(data.x_train[data.x_train >= FIRST]).argmax()
    assert after > np.mean(ordinary == most_frequent) + 0.03, after


# ----- export ---------------------------------------------------------------------------------------
@pytest.mark.slow  # the CLI test above exports text too; test_export checks a separate process
def test_text_savedmodel_in_another_process_matches_in_process(pydoc_small, tmp_path):
    model = MaskedLanguageModel(_tiny_transformer(pydoc_small), pydoc_small.vocab_size,
                                vectorizer=pydoc_small.vectorizer, seed=0)
    model.compile(optimizer="adam")
    model.fit(pydoc_small.train_dataset(32).take(2), epochs=1, verbose=0)
    version = keras_ssl.export_encoder(model, tmp_path / "mlm")
    sentences = ["The if statement is used for conditional execution.",
                 "A completely unknown zyzzyva qwertyuiop",
                 ""]
    expected = model(tf.constant(sentences)).numpy()
    assert expected.shape == (3, 32)
    np.testing.assert_allclose(keras_ssl.evaluate.embed(model, np.array(sentences)), expected,
                               rtol=1e-5, atol=1e-6)
    metadata = json.loads((version / "assets.extra" / "export.json").read_text())
    assert metadata["input_kind"] == "text" and metadata["input_name"] == "text"
    script = textwrap.dedent(f"""
        import json, sys
        import tensorflow as tf
        signature = tf.saved_model.load({str(version)!r}).signatures["serving_default"]
        spec = signature.structured_input_signature[1]["text"]
        out = signature(text=tf.constant(json.loads(sys.argv[1])))["embeddings"]
        print(json.dumps({{"dtype": spec.dtype.name, "shape": spec.shape.as_list(),
                          "out_dtype": out.dtype.name, "embeddings": out.numpy().tolist()}}))
    """)
    result = subprocess.run([sys.executable, "-c", script, json.dumps(sentences)],
                            capture_output=True, text=True, check=True)
    served = json.loads(result.stdout.strip().splitlines()[-1])
    assert served["dtype"] == "string" and served["shape"] == [None]
    assert served["out_dtype"] == "float32"
    np.testing.assert_allclose(np.array(served["embeddings"]), expected, rtol=1e-4, atol=1e-5)
    # The native Keras copy round-trips too, vectorizer included.
    native = keras_ssl.load_encoder(version)
    np.testing.assert_allclose(native(tf.constant(sentences)).numpy(), expected, rtol=1e-4,
                               atol=1e-5)


# ----- command line ---------------------------------------------------------------------------------
def test_cli_mlm_on_a_text_file_reports_accuracy_and_exports(tmp_path, capsys):
    from pydoc_data.topics import topics

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(topics[k] for k in sorted(topics)[:12]))
    code = main(["pretrain", "--method", "mlm", "--data", str(corpus), "--epochs", "1",
                 "--batch-size", "32", "--sequence-length", "32", "--width", "32",
                 "--export", str(tmp_path / "mlm"), "--verbose", "0"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "masked token accuracy" in out and "random init" in out and "trained (1 epochs)" in out
    assert "most frequent token" in out
    signature = tf.saved_model.load(str(tmp_path / "mlm" / "1")).signatures["serving_default"]
    assert signature.structured_input_signature[1]["text"].dtype == tf.string


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "simclr", "--data", "pydoc"], "holds text"),
        (["--method", "mlm", "--data", "digits"], "holds images, not text"),
        (["--method", "mlm", "--data", "pydoc", "--encoder", "convnet"], "takes images, but the data are token ids"),
    ],
)
def test_cli_text_and_method_mismatch_is_one_clear_line(args, message, capsys):
    assert main(["pretrain", *args, "--epochs", "0", "--verbose", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("keras-ssl: error:") and message in err and "\n" not in err
