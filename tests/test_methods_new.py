"""BYOL, SimSiam, Barlow Twins, VICReg, DINO, NNCLR and MAE: steps, configs, schedules, export.

Tiny models (ConvNet width 4 or a one-block ViT, 16 px images, batch 8); the training steps run
eagerly here (tracing and XLA compilation cost more than the checks); the XLA-compiled steps and
the exports of every method are marked slow.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from tiny_methods import BATCH, tiny_method

import keras_ssl
from keras_ssl import augment, encoders, xla
from keras_ssl.augment.multicrop import MultiCrop
from keras_ssl.errors import KerasSSLError
from keras_ssl.methods import MAE, get_method
from keras_ssl.methods._momentum import cosine_momentum
from keras_ssl.training import WarmupCosine

NEW = ["byol", "simsiam", "barlow_twins", "vicreg", "dino", "nnclr", "mae"]


def _tiny(name, **overrides):
    keras.utils.set_random_seed(0)
    model, x, _ = tiny_method(name)
    if overrides:
        config = model.get_config()
        config.update(overrides)
        model = type(model).from_config(config)
    return model, x


def _weights_changed(before, after):
    return any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))


@pytest.mark.parametrize("name", NEW)
def test_training_step_runs_and_config_round_trips(name):
    model, x = _tiny(name)
    assert get_method(name)[0] is type(model)
    # get_config / from_config gives the same model (with the same weights, the same embeddings).
    clone = type(model).from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone(x), model(x), rtol=1e-5, atol=1e-6)
    model.compile(optimizer=keras.optimizers.SGD(0.05), run_eagerly=True)
    before = model.encoder.get_weights()
    logs = model.train_on_batch(tf.constant(x), return_dict=True)
    assert np.isfinite(logs["loss"]), logs
    assert _weights_changed(before, model.encoder.get_weights())
    # Evaluation runs the same loss.
    assert np.isfinite(model.test_on_batch(tf.constant(x), return_dict=True)["loss"])


@pytest.mark.slow
@pytest.mark.parametrize("name", NEW)
def test_step_compiles_with_xla_and_export_loads_back(name, tmp_path):
    model, x = _tiny(name)
    model.compile(optimizer="adam", jit_compile=True)
    history = model.fit(x, batch_size=BATCH, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert xla.xla_compiled(model)
    path = keras_ssl.export_encoder(model, tmp_path / name)
    loaded = keras_ssl.load_encoder(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-5)


def test_mae_export_sees_all_patches_and_loads_back(tmp_path):
    model, x = _tiny("mae")
    path = keras_ssl.export_encoder(model, tmp_path / "mae")
    loaded = keras_ssl.load_encoder(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-5)
    # The exported encoder is the ViT over every patch: changing any patch changes it.
    changed = x.copy()
    changed[:, :4, :4] = 255 - changed[:, :4, :4]
    assert not np.allclose(loaded.predict(changed, verbose=0), loaded.predict(x, verbose=0))


# ----- EMA targets -------------------------------------------------------------------------------
def test_cosine_momentum_schedule_values():
    for step, expected in ((0, 0.99), (5, 0.995), (10, 1.0), (20, 1.0)):
        assert float(cosine_momentum(0.99, step, 10)) == pytest.approx(expected, abs=1e-6)
    assert float(cosine_momentum(0.996, 2.5, 10)) == pytest.approx(
        1 - 0.004 * (np.cos(np.pi / 4) + 1) / 2, abs=1e-6)


def test_byol_momentum_follows_the_warmup_cosine_schedule_or_total_steps():
    model, _ = _tiny("byol")
    schedule = WarmupCosine(1e-3, total_steps=100)
    model.compile(optimizer=keras.optimizers.SGD(schedule))
    model.optimizer.iterations.assign(50)
    assert float(model.current_momentum()) == pytest.approx(0.995, abs=1e-6)
    schedule.set_total_steps(200)  # plan_budget sets it after compiling: it is followed
    assert float(model.current_momentum()) == pytest.approx(
        1 - 0.01 * (np.cos(np.pi / 4) + 1) / 2, abs=1e-6)
    other, _ = _tiny("byol", total_steps=10)
    other.compile(optimizer="sgd")
    other.optimizer.iterations.assign(10)
    assert float(other.current_momentum()) == pytest.approx(1.0)
    fixed, _ = _tiny("byol")
    fixed.compile(optimizer="sgd")
    assert float(fixed.current_momentum()) == pytest.approx(0.99)


def test_byol_target_moves_by_one_minus_tau_and_gets_no_gradient():
    model, x = _tiny("byol", momentum=0.9)
    online_ids = {id(v) for v in model.trainable_variables}
    assert not online_ids & {id(v) for v in model.target_encoder.weights}
    model.trainable = True  # re-flags every variable: the targets must stay out anyway
    assert not {id(v) for v in model.trainable_variables} & {
        id(v) for v in model.target_encoder.weights}
    model.compile(optimizer=keras.optimizers.SGD(0.1), run_eagerly=True)
    pairs = model._momentum_pairs()
    targets_before = [t.numpy() for t, _ in pairs]
    model.train_on_batch(tf.constant(x))
    for (target, online), before in zip(pairs, targets_before, strict=True):
        np.testing.assert_allclose(target.numpy(), 0.9 * before + 0.1 * online.numpy(),
                                   rtol=1e-5, atol=1e-6)


def test_ema_targets_are_saved_with_the_weights(tmp_path):
    model, x = _tiny("dino")
    model.compile(optimizer="sgd", run_eagerly=True)
    model.train_on_batch(tf.constant(x))
    path = tmp_path / "dino.weights.h5"
    model.save_weights(path)
    fresh, _ = _tiny("dino")
    fresh.load_weights(path)
    for a, b in ((fresh.teacher_encoder, model.teacher_encoder), (fresh.center, model.center)):
        for u, v in zip(keras.tree.flatten(a.weights if hasattr(a, "weights") else [a]),
                        keras.tree.flatten(b.weights if hasattr(b, "weights") else [b]),
                        strict=True):
            np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


# ----- DINO --------------------------------------------------------------------------------------
def test_dino_teacher_temperature_warms_up_and_center_follows_the_teacher():
    model, x = _tiny("dino", total_steps=10)
    model.compile(optimizer="sgd", run_eagerly=True)
    for step, expected in ((0, 0.04), (1.5, 0.055), (3, 0.07), (9, 0.07)):
        model.optimizer.iterations.assign(int(step * 2) // 2 if step != 1.5 else 1)
        value = float(model.teacher_temperature_now())
        if step == 1.5:
            assert value == pytest.approx(0.04 + 0.03 / 3, abs=1e-6)
        else:
            assert value == pytest.approx(expected, abs=1e-6)
    assert not np.any(model.center.numpy())
    model.train_on_batch(tf.constant(x))
    assert np.any(model.center.numpy())


def test_dino_embeds_and_exports_with_the_teacher_as_the_paper_evaluates(tmp_path):
    model, x = _tiny("dino")
    model.compile(optimizer=keras.optimizers.SGD(0.5), run_eagerly=True)
    model.train_on_batch(tf.constant(x))
    images = model.preprocess(x)
    teacher = model.teacher_encoder(images, training=False).numpy()
    student = model.encoder(images, training=False).numpy()
    assert not np.allclose(teacher, student, atol=1e-4)  # one step apart
    assert model.embedding_encoder is model.teacher_encoder
    np.testing.assert_allclose(model(x), teacher, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(keras_ssl.evaluate.embed(model, x), teacher, rtol=1e-5, atol=1e-6)
    path = keras_ssl.export_encoder(model, tmp_path / "dino")
    np.testing.assert_allclose(keras_ssl.evaluate.embed(path, x), teacher, rtol=1e-4, atol=1e-5)
    tuned = keras_ssl.load_encoder(path, trainable=True)  # fine-tuning the teacher's weights
    assert len(tuned.trainable_weights) == len(model.encoder.trainable_weights)
    # The student on request; configs saved before the option embed as they did, with it.
    for config in ({**model.get_config(), "teacher_embeddings": False},
                   {k: v for k, v in model.get_config().items() if k != "teacher_embeddings"}):
        student_model = keras_ssl.DINO.from_config(config)
        student_model.set_weights(model.get_weights())
        assert student_model.embedding_encoder is student_model.encoder
        np.testing.assert_allclose(student_model(x), student, rtol=1e-5, atol=1e-6)


def test_dino_local_views_shared_weights_for_convnets_resize_for_vits():
    model, x = _tiny("dino")
    local, mode = model.local_encoder((8, 8))
    assert mode == "shared" and local.input_shape == (None, 8, 8, 1)
    assert all(a is b for a, b in zip(local.weights, model.encoder.weights, strict=True))
    assert {id(v) for v in model.trainable_variables} >= {id(v) for v in local.trainable_weights}
    assert len({id(v) for v in model.weights}) == len(model.weights)  # nothing tracked twice
    vit = encoders.ViT((16, 16, 1), hidden_dim=8, num_layers=1, num_heads=2, mlp_dim=8)
    dino_vit = keras_ssl.DINO(vit, output_dim=8, hidden_dim=8, bottleneck_dim=4,
                              num_local_views=2, seed=0)
    assert dino_vit.local_encoder((8, 8))[1] == "resize"
    dino_vit.compile(optimizer="sgd", run_eagerly=True)
    assert np.isfinite(dino_vit.train_on_batch(tf.constant(x), return_dict=True)["loss"])


def test_multicrop_views_are_random_per_image():
    images = np.tile(np.random.default_rng(0).integers(0, 256, (1, 16, 16, 3), dtype="uint8"),
                     (4, 1, 1, 1))  # the same image 4 times
    crop = MultiCrop(16, num_local=3, local_size=8, seed=1)
    global_views, local_views = crop(images, training=True)
    assert tuple(global_views.shape) == (8, 16, 16, 3)
    assert tuple(local_views.shape) == (12, 8, 8, 3)
    for views in (global_views.numpy(), local_views.numpy()):
        flat = views.reshape(len(views), -1)
        distinct = {tuple(np.round(row, 4)) for row in flat}
        assert len(distinct) == len(flat)  # every copy of the image got its own crop/colours
    again_g, _ = MultiCrop(16, num_local=3, local_size=8, seed=1)(images, training=True)
    np.testing.assert_allclose(again_g.numpy(), global_views.numpy(), atol=1e-6)  # seeded
    g, loc = crop(images, training=False)
    np.testing.assert_allclose(g[0], g[4], atol=1e-6)
    with pytest.raises(KerasSSLError, match="at least 8"):
        MultiCrop(16, local_size=4)


# ----- NNCLR -------------------------------------------------------------------------------------
def test_nnclr_enqueues_view_projections_and_saves_the_queue(tmp_path):
    model, x = _tiny("nnclr")
    model.compile(optimizer="sgd", run_eagerly=True)
    before = model.queue.numpy().copy()
    model.train_on_batch(tf.constant(x))
    assert int(model.queue_pointer.numpy()) == BATCH
    assert not np.array_equal(model.queue.numpy()[:BATCH], before[:BATCH])
    np.testing.assert_array_equal(model.queue.numpy()[BATCH:], before[BATCH:])
    np.testing.assert_allclose(np.linalg.norm(model.queue.numpy()[:BATCH], axis=1), 1, rtol=1e-5)
    model.save_weights(tmp_path / "nnclr.weights.h5")
    fresh, _ = _tiny("nnclr")
    fresh.load_weights(tmp_path / "nnclr.weights.h5")
    np.testing.assert_array_equal(fresh.queue.numpy(), model.queue.numpy())
    assert int(fresh.queue_pointer.numpy()) == BATCH
    small, _ = _tiny("nnclr", queue_size=4)
    small.compile(optimizer="sgd", run_eagerly=True)
    with pytest.raises(KerasSSLError, match="queue_size"):
        small.train_on_batch(tf.constant(x))


# ----- MAE ---------------------------------------------------------------------------------------
def test_mae_encoder_never_sees_the_masked_patches():
    model, x = _tiny("mae")
    images = keras_ssl.augment.to_float_images(x)
    keep, restore, mask = model.random_masking(BATCH)
    assert mask.shape == (BATCH, model.num_patches)
    np.testing.assert_array_equal(mask.numpy().sum(1), model.num_patches - model.num_visible)
    # Per image: different images keep different patches.
    assert len({tuple(sorted(row)) for row in keep.numpy()}) > 1
    latent = model.encode_visible(images, keep).numpy()
    assert latent.shape[1] == 1 + model.num_visible  # [CLS] + the visible tokens only
    p = model.patch_size
    grid = 16 // p
    pixel_mask = np.repeat(np.repeat(mask.numpy().reshape(BATCH, grid, grid), p, 1), p, 2)
    noise = np.random.default_rng(1).uniform(size=images.shape).astype("float32")
    masked_changed = np.where(pixel_mask[..., None] == 1, noise, images.numpy())
    np.testing.assert_allclose(model.encode_visible(masked_changed, keep).numpy(), latent,
                               rtol=1e-5, atol=1e-6)
    visible_changed = np.where(pixel_mask[..., None] == 0, noise, images.numpy())
    assert not np.allclose(model.encode_visible(visible_changed, keep).numpy(), latent, atol=1e-3)
    # The reconstruction loss counts the masked patches only.
    prediction = model.decode(model.encode_visible(images, keep), restore)
    target = model.targets(images)
    per_patch = np.mean((prediction.numpy() - target.numpy()) ** 2, axis=-1)
    expected = (per_patch * mask.numpy()).sum() / mask.numpy().sum()
    loss = keras_ssl.losses.masked_reconstruction(target, prediction, mask[..., None])
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_mae_needs_a_vit_and_a_sensible_mask_ratio():
    with pytest.raises(KerasSSLError, match="ViT"):
        MAE(encoders.ConvNet((16, 16, 1), width=4))
    vit = encoders.ViT((16, 16, 1), hidden_dim=8, num_layers=1, num_heads=2, mlp_dim=8)
    with pytest.raises(KerasSSLError, match="mask_ratio"):
        MAE(vit, mask_ratio=1.0)
    assert MAE(vit, mask_ratio=0.75).num_visible == 4  # 16 patches of 4x4 px


@pytest.mark.parametrize("name, bad, message", [
    ("byol", dict(momentum=1.5), "momentum"),
    ("byol", dict(total_steps=0), "total_steps"),
    ("simsiam", dict(projection_dim=0), "projection_dim"),
    ("barlow_twins", dict(lambda_=-1), "lambda_"),
    ("vicreg", dict(variance=float("nan")), "variance"),
    ("nnclr", dict(temperature=0), "temperature"),
    ("dino", dict(teacher_temperature=-1), "teacher_temperature"),
])
def test_bad_settings_raise_clear_errors(name, bad, message):
    cls, _ = get_method(name)
    with pytest.raises(KerasSSLError, match=message):
        cls(encoders.ConvNet((16, 16, 1), width=4), **bad)


def test_dino_refuses_vectors_and_default_augmenters_are_set():
    with pytest.raises(KerasSSLError, match="images"):
        keras_ssl.DINO(encoders.MLP(6))
    model = keras_ssl.BYOL(encoders.MLP(6), projection_dim=4, hidden_dim=8)
    assert model.input_kind == "vectors"
    assert isinstance(keras_ssl.DINO(encoders.ConvNet((16, 16, 1), width=4)).augmenter, MultiCrop)
    assert isinstance(augment.multicrop.mae(16), augment.Augmenter)
    model.compile(optimizer="sgd", run_eagerly=True)
    assert np.isfinite(model.train_on_batch(tf.random.normal((8, 6)), return_dict=True)["loss"])


def test_byol_asymmetric_views():
    pair = augment.byol(64, seed=0)
    first, second = pair.first.augmentations, pair.second.augmentations
    assert [type(a).__name__ for a in first][-1] == "GaussianBlur" and first[-1].p == 1.0
    assert type(second[-1]).__name__ == "Solarize" and second[-1].p == 0.2
    assert not any(type(a).__name__ == "Solarize" for a in first)
    images = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype="uint8")
    small = augment.byol(16, seed=0)
    assert tuple(small(images).shape) == (8, 16, 16, 3)
    model = keras_ssl.BYOL(encoders.ConvNet((16, 16, 3), width=4), small, projection_dim=8,
                           hidden_dim=16, seed=0)
    clone = keras_ssl.BYOL.from_config(model.get_config())
    assert isinstance(clone.augmenter, augment.ViewPair)
    model.compile(optimizer="sgd", run_eagerly=True)
    assert np.isfinite(model.train_on_batch(tf.constant(images), return_dict=True)["loss"])


@pytest.mark.parametrize("output_bn", [False, True])
def test_byol_output_bn_centres_the_targets_so_no_constant_prediction_matches(output_bn):
    model, x = _tiny("byol", output_bn=output_bn)
    assert model.get_config()["output_bn"] is output_bn
    assert _tiny("byol")[0].output_bn is True  # the default
    older = {k: v for k, v in model.get_config().items() if k != "output_bn"}
    assert type(model).from_config(older).output_bn is False  # saved before the option: the paper's
    views = tf.concat([model.augmenter(x), model.augmenter(x)], axis=0)
    z = model.target_projector(model.target_encoder(views, training=True), training=True).numpy()
    unit = z / np.linalg.norm(z, axis=1, keepdims=True)
    # The best constant prediction (the mean direction) scores cos = |mean of the unit targets|.
    best_constant_cos = float(np.linalg.norm(unit.mean(axis=0)))
    if output_bn:
        np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-5)
        assert best_constant_cos < 0.1, best_constant_cos
    else:  # the paper's head: a random network's projections share a direction
        assert best_constant_cos > 0.3, best_constant_cos
