"""The learning-rate schedule and training to a wall-clock budget (keras_ssl.training)."""

import math
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from tiny_methods import tiny_method

import keras_ssl
from keras_ssl import encoders, training
from keras_ssl.cli import main
from keras_ssl.errors import KerasSSLError


def reference_lr(step, peak, total, warmup_fraction=0.05):
    warmup = max(1, math.floor(total * warmup_fraction))
    if step < warmup:
        return peak * step / warmup
    progress = min(max((step - warmup) / max(total - warmup, 1), 0.0), 1.0)
    return peak * 0.5 * (1 + math.cos(math.pi * progress))


def test_warmup_cosine_matches_the_formula_and_ends_at_zero():
    schedule = training.WarmupCosine(1e-3, total_steps=200)
    for step in (0, 1, 5, 10, 11, 100, 199, 200, 500):
        assert float(schedule(step)) == pytest.approx(reference_lr(step, 1e-3, 200), abs=1e-9)
    assert float(schedule(200)) == pytest.approx(0.0, abs=1e-12)


def test_total_steps_can_change_after_the_schedule_is_traced():
    schedule = training.WarmupCosine(1e-3, total_steps=100)
    traced = tf.function(lambda step: schedule(step))
    before = float(traced(tf.constant(60)))
    schedule.set_total_steps(1000)
    after = float(traced(tf.constant(60)))
    assert before == pytest.approx(reference_lr(60, 1e-3, 100))
    assert after == pytest.approx(reference_lr(60, 1e-3, 1000))
    assert after > before


def test_schedule_round_trips_through_its_config():
    schedule = training.WarmupCosine(3e-3, total_steps=77, warmup_fraction=0.1)
    clone = training.WarmupCosine.from_config(schedule.get_config())
    assert [float(clone(s)) for s in (0, 5, 40)] == [float(schedule(s)) for s in (0, 5, 40)]


def _rotnet(seed=0):
    encoder = encoders.ConvNet((16, 16, 1), width=4)
    model = keras_ssl.RotNet(encoder, seed=seed)
    model.compile(optimizer=training.default_optimizer(1e-2, 100))
    return model


def test_timing_steps_leaves_weights_optimizer_and_random_state_as_they_were():
    model = _rotnet()
    x = np.random.default_rng(0).integers(0, 256, (32, 16, 16, 1), dtype=np.uint8)
    model.train_on_batch(x)  # build every variable first
    before = [v.numpy().copy() for v in (*model.variables, *model.optimizer.variables)]
    seconds = training.seconds_per_step(model, (x,))
    after = [v.numpy() for v in (*model.variables, *model.optimizer.variables)]
    assert seconds > 0
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))


def test_plan_sets_the_schedule_and_the_budget_stops_at_the_planned_step():
    model = _rotnet()
    x = np.random.default_rng(0).integers(0, 256, (64, 16, 16, 1), dtype=np.uint8)
    budget = training.plan_budget(model, x, batch_size=16, minutes=1 / 60)  # one second
    assert budget.max_steps >= 1 and budget.epochs == -(-budget.max_steps // 4)
    assert float(model.optimizer._learning_rate.total_steps.numpy()) == budget.max_steps
    model.fit(x, batch_size=16, epochs=budget.epochs, callbacks=[budget], verbose=0)
    assert budget.steps <= budget.max_steps
    if budget.steps == budget.max_steps:  # not cut short by a busy machine
        # The schedule ends where training does: at a learning rate of zero.
        assert float(model.optimizer.learning_rate) == pytest.approx(0.0, abs=1e-9)


def test_time_budget_stops_fit_on_time_not_counting_the_first_step():
    model = _rotnet()
    x = np.random.default_rng(0).integers(0, 256, (64, 16, 16, 1), dtype=np.uint8)
    budget = training.TimeBudget(1.0)
    start = time.perf_counter()
    history = model.fit(x, batch_size=16, epochs=10_000, callbacks=[budget], verbose=0)
    assert time.perf_counter() - start < 30
    assert budget.stopped_at_step is not None and 1.0 <= budget.spent < 5.0
    assert len(history.history["loss"]) < 10_000


@pytest.mark.parametrize("minutes", [0, -1, None])
def test_a_budget_must_be_positive(minutes):
    with pytest.raises(KerasSSLError, match=r"A time budget \(minutes\) must be"):
        training.plan_budget(_rotnet(), np.zeros((8, 16, 16, 1), np.uint8), batch_size=4,
                             minutes=minutes)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--minutes", "0"], "--minutes must be > 0"),
        (["--minutes", "1", "--epochs", "2"], "Give --epochs or --minutes, not both"),
        (["--minutes", "1", "--checkpoint-dir", "ckpt"], "with --checkpoint-dir give --epochs"),
    ],
)
def test_bad_budget_flags_get_one_line(args, message, capsys):
    assert main(["pretrain", "--method", "rotnet", "--data", "digits", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("keras-ssl: error:") and message in err


@pytest.mark.slow
def test_cli_trains_for_the_minutes_given(capsys):
    start = time.perf_counter()
    assert main(["pretrain", "--method", "rotnet", "--data", "digits", "--max-examples", "256",
                 "--batch-size", "32", "--eval-examples", "256", "--knn-every", "0",
                 "--minutes", "0.1", "--verbose", "0"]) == 0
    out = capsys.readouterr().out
    assert "(what fits in 0.1 minutes)" in out and "trained (" in out
    assert time.perf_counter() - start < 120
    keras.backend.clear_session()



@pytest.mark.parametrize("probe", [False, True])
def test_the_first_fit_traces_the_step_once(probe):
    # tf.function traces a step that creates variables twice: the optimizer is built before.
    if probe:
        model = keras_ssl.SimCLR(encoders.ConvNet((16, 16, 1), width=4), projection_dim=8,
                                 probe_classes=2, seed=0)
        _, x, _ = tiny_method("simclr")
    else:  # BYOL's target network is not trained by the optimizer
        model, x, _ = tiny_method("byol")
    model.compile(optimizer="adam")
    traced, step = [], model.train_step
    model.train_step = lambda data: traced.append(1) or step(data)
    y = (np.arange(len(x)) % 2).astype("int64") if probe else None
    model.fit(x, y, batch_size=len(x), epochs=2, verbose=0)
    assert len(traced) == 1
    # Adam's step count, learning rate and two slots per variable the method trains: none for
    # the probe's (its own optimizer) or a target network's.
    trained = model.optimized_variables()
    assert len(model.optimizer.variables) == 2 + 2 * len(trained)
    assert len(trained) < len(model.trainable_variables) if probe else len(trained) > 0
