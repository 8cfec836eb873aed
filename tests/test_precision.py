"""Mixed precision: the policy by name, float32 losses and augmentation, loss scaling for float16."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from tiny_methods import BATCH, tiny_method

from keras_ssl import augment, encoders, precision
from keras_ssl.devices import RunDevices
from keras_ssl.errors import KerasSSLError
from keras_ssl.methods import METHODS


@pytest.fixture(autouse=True)
def restore_policy():
    before = keras.mixed_precision.dtype_policy().name
    yield
    keras.mixed_precision.set_dtype_policy(before)


def test_auto_is_float32_without_gpu_and_mixed_with_one(monkeypatch):
    assert precision.resolve_precision("auto") == "float32"  # this machine has no GPU
    monkeypatch.setattr(tf.config, "list_physical_devices",
                        lambda kind=None: ["gpu:0"] if kind == "GPU" else [])
    assert precision.resolve_precision("auto") == "mixed_float16"
    assert precision.resolve_precision("MIXED_BFLOAT16") == "mixed_bfloat16"


def test_bfloat16_units_are_read_from_the_cpu_flags(tmp_path):
    def cpuinfo(name, text):
        path = tmp_path / name
        path.write_text(text)
        return str(path)

    zen4 = cpuinfo("zen4", "processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16\n")
    sapphire_rapids = cpuinfo("spr", "flags\t\t: fpu avx512f amx_bf16 amx_tile\n")
    skylake = cpuinfo("skylake", "flags\t\t: fpu sse2 avx512f avx512_vnni\n")
    named_not_flagged = cpuinfo("other", "model name\t: avx512_bf16\nflags\t\t: fpu\n")
    assert precision.cpu_computes_bfloat16(zen4)
    assert precision.cpu_computes_bfloat16(sapphire_rapids)
    assert not precision.cpu_computes_bfloat16(skylake)
    assert not precision.cpu_computes_bfloat16(named_not_flagged)
    assert not precision.cpu_computes_bfloat16(str(tmp_path / "missing"))


@pytest.mark.parametrize("units", [True, False])
def test_auto_on_a_cpu_with_bfloat16_units_suggests_it_and_keeps_float32(units, monkeypatch,
                                                                          capsys):
    monkeypatch.setattr(precision, "cpu_computes_bfloat16", lambda cpuinfo=None: units)
    setup = RunDevices.create(None, None, "auto", "auto", False, report=True)
    out = capsys.readouterr().out
    assert precision.current_precision() == "float32" and setup.replicas == 1
    assert ("--precision mixed_bfloat16" in out) == units
    # Asked for by name, or mixed_float16 on a GPU: nothing to suggest.
    assert precision.bfloat16_hint("float32", "float32") is None
    assert precision.bfloat16_hint("auto", "mixed_float16") is None
    assert (precision.bfloat16_hint("AUTO", "float32") is not None) == units


@pytest.mark.parametrize("bad", ["float16", "fp32", "", None, 16])
def test_unknown_precision_names_the_choices(bad):
    with pytest.raises(KerasSSLError, match="mixed_float16"):
        precision.set_precision(bad)


def test_set_precision_sets_the_policy_layers_are_built_with():
    assert precision.set_precision("mixed_float16") == "mixed_float16"
    assert precision.current_precision() == "mixed_float16"
    encoder = encoders.ConvNet((16, 16, 1), width=4)
    conv = encoder.get_layer("block1_a_conv")
    assert conv.compute_dtype == "float16" and conv.variable_dtype == "float32"
    assert encoder(np.zeros((2, 16, 16, 1), "float32")).dtype == "float16"
    precision.set_precision("float32")
    assert encoders.ConvNet((16, 16, 1), width=4).get_layer("block1_a_conv").compute_dtype == (
        "float32")


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_augmentation_stays_float32_under_a_mixed_policy(policy):
    precision.set_precision(policy)
    images = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype="uint8")
    for recipe in (augment.simclr(16, seed=0), augment.moco_v2(16, blur=True, seed=0)):
        views = recipe(images, training=True)
        assert views.dtype == tf.float32
        assert 0.0 <= float(tf.reduce_min(views)) and float(tf.reduce_max(views)) <= 1.0
    assert augment.vectors(seed=0)(np.ones((4, 5), "float32")).dtype == tf.float32


def _mixed_step(name, policy="mixed_float16", jit_compile=False):
    precision.set_precision(policy)
    model, x, y = tiny_method(name)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=jit_compile)
    history = model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    loss = model.compute_ssl_loss(tf.constant(x), None if y is None else tf.constant(y),
                                  training=False)
    return model, history, loss


@pytest.mark.parametrize("name", ["simclr", "rotnet"])
def test_mixed_float16_step_gives_a_finite_float32_loss_with_loss_scaling(name):
    model, history, loss = _mixed_step(name)
    assert model.encoder.compute_dtype == "float16"
    # Keras wraps the optimizer at compile time under mixed_float16: dynamic loss scaling.
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert loss.dtype == tf.float32  # losses in float32 whatever the policy
    assert np.isfinite(history.history["loss"]).all()
    # The variables the optimizer updates stay float32.
    assert {v.dtype for v in model.trainable_variables} == {"float32"}


def test_ts2vec_masks_its_bfloat16_steps_under_mixed_bfloat16():
    # Its step mask (float32) multiplies the input projection's output, bfloat16 under the policy.
    model, history, loss = _mixed_step("ts2vec", "mixed_bfloat16")
    assert model.projection.compute_dtype == "bfloat16"
    assert loss.dtype == tf.float32
    assert np.isfinite(history.history["loss"]).all()


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_trains_under_mixed_precision_with_xla(name, policy):
    model, history, loss = _mixed_step(name, policy, jit_compile=True)
    assert model.jit_compile is True
    assert loss.dtype == tf.float32
    assert np.isfinite(history.history["loss"]).all()
    wrapped = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert wrapped == (policy == "mixed_float16")  # bfloat16 has float32's range: no scaling
