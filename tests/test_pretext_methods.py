"""RotNet, Jigsaw and the autoencoders: they learn under XLA, export, round-trip, and fail early."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import keras_ssl
from keras_ssl import encoders, heads
from keras_ssl.errors import KerasSSLError
from keras_ssl.methods import get_method
from keras_ssl.plot import save_reconstructions

SIZE = 32  # Jigsaw's 3x3 grid needs 8 px tiles for the ConvNet's three poolings
METHODS = ("rotnet", "jigsaw", "autoencoder", "denoising", "masked")
# Small pretext problems so a few steps on one batch show learning.
SMALL = {"rotnet": {"hidden_dim": 32}, "jigsaw": {"permutations": 10, "hidden_dim": 64}}


@pytest.fixture(scope="module")
def digits():
    """32 real 32x32 digits: pretext tasks on random noise have nothing to learn."""
    return keras_ssl.data.load("digits").x_train[:32]


def _tiny_encoder(size=SIZE):
    """Two strided convolutions (one with batch norm) and global pooling: XLA compiles it in half
    the time of encoders.ConvNet, and it runs on Jigsaw's 8 px tiles as well as on 32 px images."""
    inputs = keras.Input((size, size, 1), name="images")
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(inputs)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x), name="tiny")


def _build(name, **kwargs):
    keras.utils.set_random_seed(0)
    cls, preset = get_method(name)
    return cls(_tiny_encoder(), seed=1, **{**preset, **SMALL.get(name, {}), **kwargs})


@pytest.fixture(scope="module")
def trained(digits):
    """Each method fitted once under XLA on one fixed batch: {name: (model, history)}."""
    cache = {}

    def get(name):
        if name not in cache:
            model = _build(name)
            model.compile(optimizer=keras.optimizers.Adam(3e-3), jit_compile=True)
            history = model.fit(digits, batch_size=len(digits), epochs=16, verbose=0)
            cache[name] = (model, history.history)
        return cache[name]

    return get


@pytest.mark.parametrize("name", [  # one autoencoder variant in the default suite
    pytest.param(n, marks=pytest.mark.slow) if n in ("autoencoder", "masked") else n
    for n in METHODS])
def test_loss_falls_on_a_fixed_batch_under_xla(name, trained):
    model, history = trained(name)
    assert model.jit_compile is True  # Keras silently drops XLA for ops it cannot compile
    losses = history["loss"]
    assert np.all(np.isfinite(losses))
    assert min(losses[-3:]) < 0.7 * losses[0], losses
    if name == "rotnet":
        assert history["rotation_accuracy"][-1] > 0.5  # chance is 0.25
    elif name == "jigsaw":
        assert history["jigsaw_accuracy"][-1] > 0.3  # chance is 0.1
    else:
        error = history["reconstruction_error"]
        assert error[-1] < error[0]


@pytest.mark.parametrize("name", ["rotnet", "jigsaw", "masked"])
def test_export_and_load_back_give_the_same_embeddings(name, trained, digits, tmp_path):
    model, _ = trained(name)
    version = keras_ssl.export_encoder(model, tmp_path / name)
    loaded = keras_ssl.load_encoder(version)
    expected = keras_ssl.evaluate.embed(model, digits[:4])
    assert loaded.input_shape == (None, SIZE, SIZE, 1)  # whole images, also for Jigsaw
    np.testing.assert_allclose(loaded.predict(digits[:4], verbose=0), expected, atol=1e-4)
    np.testing.assert_allclose(keras_ssl.evaluate.embed(version, digits[:4]), expected, atol=1e-4)


def test_every_name_is_registered_with_its_preset():
    assert get_method("rotnet") == (keras_ssl.RotNet, {})
    assert get_method("jigsaw") == (keras_ssl.Jigsaw, {})
    assert get_method("autoencoder") == (keras_ssl.AutoEncoder, {})
    assert get_method("denoising") == (keras_ssl.AutoEncoder, {"corruption": "noise"})
    assert get_method("masked") == (keras_ssl.AutoEncoder, {"corruption": "mask"})


# ----- the masked autoencoder ---------------------------------------------------------------
def test_masked_loss_has_zero_gradient_on_visible_pixels(digits):
    model = _build("masked", mask_ratio=0.5, patch_size=8)
    with tf.GradientTape() as tape:
        out = model.forward(digits[:4], training=True, seed=3)
        tape.watch(out["reconstruction"])
        loss = model.reconstruction_loss(out["clean"], out["reconstruction"], out["mask"])
    gradient = tape.gradient(loss, out["reconstruction"]).numpy()
    mask = np.broadcast_to(out["mask"].numpy(), gradient.shape)
    assert np.all(gradient[mask == 0] == 0.0)
    assert np.mean(gradient[mask == 1] != 0.0) > 0.99
    # Half of the 16 patches of every image, a different half in each image.
    per_image = mask.reshape(4, -1).mean(axis=1)
    np.testing.assert_array_equal(per_image, 0.5)
    assert len({m.tobytes() for m in mask}) == 4
    # The encoder sees mid-grey where masked and the clean image elsewhere.
    clean, corrupted = out["clean"].numpy(), out["corrupted"].numpy()
    np.testing.assert_array_equal(corrupted[mask == 1], 0.5)
    np.testing.assert_array_equal(corrupted[mask == 0], clean[mask == 0])


def test_masks_and_noise_change_every_step(digits):
    for name in ("masked", "denoising"):
        model = _build(name)
        first = model.forward(digits[:2])["corrupted"].numpy()
        second = model.forward(digits[:2])["corrupted"].numpy()
        assert not np.array_equal(first, second), name
        again = model.forward(digits[:2], seed=5)["corrupted"].numpy()
        np.testing.assert_array_equal(again, model.forward(digits[:2], seed=5)["corrupted"])


def test_denoising_scores_every_pixel_against_the_clean_image(digits):
    model = _build("denoising", noise_stddev=0.3)
    out = model.forward(digits[:4], seed=2)
    noisy, clean = out["corrupted"].numpy(), out["clean"].numpy()
    assert out["mask"] is None and 0.0 <= noisy.min() and noisy.max() <= 1.0
    assert 0.1 < np.std(noisy - clean) < 0.3  # clipping shrinks the 0.3 noise a little
    expected = np.mean((out["reconstruction"].numpy() - clean) ** 2)
    loss = model.reconstruction_loss(out["clean"], out["reconstruction"], out["mask"])
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


@pytest.mark.parametrize(
    "corruption",
    [pytest.param(None, marks=pytest.mark.slow), pytest.param("noise", marks=pytest.mark.slow),
     "mask"],
)
def test_vectors_train_with_an_mlp_decoder(corruption):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    # Vectors on a 3-dimensional subspace of R^12: reconstructable from few features.
    x = (rng.standard_normal((64, 3)) @ rng.standard_normal((3, 12))).astype("float32")
    model = keras_ssl.AutoEncoder(encoders.MLP(12, hidden=(32,), output_dim=8),
                                  corruption=corruption, mask_ratio=0.25, seed=0)
    assert model.decoder.output_shape == (None, 12)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=True)
    losses = model.fit(x, batch_size=64, epochs=15, verbose=0).history["loss"]
    assert model.jit_compile is True
    assert min(losses[-3:]) < 0.7 * losses[0], losses
    if corruption == "mask":
        out = model.forward(x[:8], seed=1)
        mask = out["mask"].numpy()
        np.testing.assert_array_equal(mask.sum(axis=1), 3)  # round(0.25 * 12) features per row
        np.testing.assert_array_equal(out["corrupted"].numpy()[mask == 1], 0.0)


# ----- Jigsaw -------------------------------------------------------------------------------
def test_jigsaw_runs_the_exported_encoders_own_weights_on_tiles():
    model = _build("jigsaw", grid=3)
    assert model.tile_shape == (8, 8, 1)
    assert model.tile_encoder.input_shape == (None, 8, 8, 1)
    assert model.encoder.input_shape == (None, SIZE, SIZE, 1)
    assert [id(w) for w in model.tile_encoder.weights] == [id(w) for w in model.encoder.weights]
    # The puzzle keeps tiles in [0, 1], the range the encoder takes for whole images.
    tiles, labels = model.puzzle(np.full((2, SIZE, SIZE, 1), 255, "uint8"), seed=0)
    assert tiles.shape == (2, 9, 8, 8, 1) and float(tf.reduce_max(tiles)) == 1.0
    assert labels.shape == (2,)


def test_jigsaw_can_resize_tiles_for_an_encoder_with_a_fixed_input(digits):
    inputs = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(inputs)
    outputs = keras.layers.Dense(16)(keras.layers.Flatten()(x))
    dense_encoder = keras.Model(inputs, outputs)
    with pytest.raises(KerasSSLError, match="resize_tiles=True"):
        keras_ssl.Jigsaw(dense_encoder, permutations=10)
    keras.utils.set_random_seed(0)
    model = keras_ssl.Jigsaw(dense_encoder, permutations=10, resize_tiles=True, seed=0)
    model.compile(optimizer="adam", jit_compile=True)
    history = model.fit(digits[:8], batch_size=8, epochs=2, verbose=0).history
    assert model.jit_compile is True and np.isfinite(history["loss"]).all()


def test_jigsaw_refuses_images_too_small_for_the_grid_when_built():
    with pytest.raises(KerasSSLError, match="too small for a 3x3 jigsaw grid"):
        keras_ssl.Jigsaw(encoders.ConvNet((9, 9, 1), width=4), grid=3)
    with pytest.raises(KerasSSLError, match="cannot run on 4x4 tiles"):
        keras_ssl.Jigsaw(encoders.ConvNet((16, 16, 1), width=4), grid=3)
    with pytest.raises(KerasSSLError, match="between 1 and 24"):
        keras_ssl.Jigsaw(encoders.ConvNet((32, 32, 1), width=4), grid=2, permutations=100)


def test_jigsaw_grid_follows_the_image_size_when_not_given():
    small = keras_ssl.Jigsaw(encoders.ConvNet((32, 32, 3), width=4))
    assert (small.grid, small.num_permutations, small.tile_shape) == (2, 24, (14, 14, 3))
    large = keras_ssl.Jigsaw(encoders.ConvNet((64, 64, 3), width=4))
    assert (large.grid, large.num_permutations) == (3, 100)
    chosen = keras_ssl.Jigsaw(encoders.ConvNet((32, 32, 3), width=4), grid=3, permutations=50)
    assert (chosen.grid, chosen.num_permutations) == (3, 50)
    clone = keras_ssl.Jigsaw.from_config(small.get_config())
    assert (clone.grid, clone.num_permutations) == (2, 24)


# ----- RotNet -------------------------------------------------------------------------------
def test_rotnet_needs_square_images():
    with pytest.raises(KerasSSLError, match="square"):
        keras_ssl.RotNet(encoders.ConvNet((32, 24, 1), width=4))
    with pytest.raises(KerasSSLError, match=r"^RotNet learns from images, but the encoder takes "
                                            r"vectors .* learns from vectors: autoencoder, "):
        keras_ssl.RotNet(encoders.MLP(8))


def test_rotnet_classifies_all_four_turns_of_every_image(digits):
    model = _build("rotnet")
    model.compile(optimizer="adam")
    results = model.evaluate(digits[:8], batch_size=8, verbose=0, return_dict=True)
    assert set(results) == {"loss", "rotation_accuracy"}
    # A fresh 4-way head is near chance on the balanced labels: loss about log(4).
    assert abs(results["loss"] - np.log(4)) < 0.5


# ----- configs, saving, bad settings --------------------------------------------------------
@pytest.mark.parametrize(
    "name, settings",
    [
        ("rotnet", {"hidden_dim": 16}),
        ("jigsaw", {"grid": 3, "permutations": 12, "hidden_dim": 24, "permutation_seed": 4}),
        ("masked", {"mask_ratio": 0.5, "patch_size": 8}),
        ("denoising", {"noise_stddev": 0.1}),
    ],
)
def test_config_round_trip_and_saved_model_file(name, settings, digits, tmp_path):
    model = _build(name, **settings)
    model.predict(digits[:1], verbose=0)  # builds it, so that saving has every weight
    clone = type(model).from_config(model.get_config())
    for key, value in settings.items():
        assert clone.get_config()[key] == value
    assert clone.get_config() == model.get_config()
    path = tmp_path / f"{name}.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(restored.predict(digits[:4], verbose=0),
                               model.predict(digits[:4], verbose=0), atol=1e-5)
    if name == "jigsaw":
        assert restored.tile_encoder.weights[0] is restored.encoder.weights[0]
        np.testing.assert_array_equal(restored.permutations, model.permutations)
    if name in ("masked", "denoising"):
        got = restored.reconstruct(digits[:2], seed=1)["reconstruction"]
        np.testing.assert_allclose(got, model.reconstruct(digits[:2], seed=1)["reconstruction"],
                                   atol=1e-5)


def test_bad_autoencoder_settings_fail_when_built():
    encoder = encoders.ConvNet((32, 32, 1), width=4)
    with pytest.raises(KerasSSLError, match="None, 'noise' or 'mask'"):
        keras_ssl.AutoEncoder(encoder, corruption="blur")
    with pytest.raises(KerasSSLError, match="does not tile 32x32"):
        keras_ssl.AutoEncoder(encoder, corruption="mask", patch_size=5)
    with pytest.raises(KerasSSLError, match="mask_ratio"):
        keras_ssl.AutoEncoder(encoder, corruption="mask", mask_ratio=1.0)
    with pytest.raises(KerasSSLError, match="the reconstruction must have the input's shape"):
        keras_ssl.AutoEncoder(encoder, decoder=heads.decoder_head(encoder.output_shape[-1],
                                                                  (28, 28, 1)))


@pytest.mark.parametrize("shape", [(32, 32, 1), (28, 28, 1), (30, 20, 3), (8, 8, 1), (12,)])
def test_default_decoder_rebuilds_the_input_shape(shape):
    decoder = heads.decoder_head(64, shape)
    assert decoder.output_shape == (None, *shape)
    out = decoder(np.random.default_rng(0).standard_normal((2, 64)).astype("float32"))
    if len(shape) == 3:  # images come back in [0, 1]
        assert 0.0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 1.0


# ----- the reconstruction picture -----------------------------------------------------------
def test_reconstruction_png_has_a_row_per_stage(trained, digits, tmp_path):
    model, _ = trained("masked")
    path = save_reconstructions(model, digits, tmp_path / "plots" / "masked.png", n=4)
    with Image.open(path) as picture:
        assert picture.format == "PNG"
        assert picture.size == ((4 + 1) * 100, 3 * 100)  # 100 px per image, a label column
        pixels = np.asarray(picture.convert("L"), dtype="float32")
    # Three rows of drawn images: each row of cells differs from the white background.
    for row in range(3):
        cells = pixels[row * 100 + 10 : row * 100 + 90, 110:]
        assert cells.std() > 10, row
    with pytest.raises(KerasSSLError, match="autoencoder"):
        save_reconstructions(trained("rotnet")[0], digits, tmp_path / "x.png")


# ----- the command line ---------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", METHODS)
def test_cli_pretrains_each_method_on_digits_and_exports(name, tmp_path, capsys):
    from keras_ssl.cli import main

    code = main(["pretrain", "--method", name, "--data", "digits", "--epochs", "1",
                 "--max-examples", "300", "--batch-size", "64", "--verbose", "0",
                 "--export", str(tmp_path / name)])
    out = capsys.readouterr().out
    assert code == 0
    assert "random init" in out and "trained (1 epochs)" in out
    assert (tmp_path / name / "1" / "saved_model.pb").exists()
