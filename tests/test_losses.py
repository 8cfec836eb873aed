"""keras_ssl.losses against plain NumPy references: values, gradients, constructed cases, errors.

Each reference below is written from the paper's formula with explicit loops, in float64; its
gradient is taken by central finite differences (or written analytically) and compared with the
gradient TensorFlow computes through the loss.
"""

import math

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl import losses
from keras_ssl.errors import KerasSSLError

VALUE_TOL = dict(rtol=1e-5, atol=1e-6)
GRAD_TOL = dict(rtol=1e-3, atol=5e-5)


# ----- helpers ------------------------------------------------------------------------------------
def l2n(z):
    z = np.asarray(z, np.float64)
    return z / np.sqrt(np.maximum((z**2).sum(-1, keepdims=True), 1e-12))


def numeric_grad(f, x, eps=1e-6):
    """Central finite differences of the scalar function f at x (float64)."""
    x = np.asarray(x, np.float64)
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[index] += eps
        minus[index] -= eps
        grad[index] = (f(plus) - f(minus)) / (2 * eps)
    return grad


def tf_value_and_grads(fn, *arrays):
    """fn's scalar value and its gradients w.r.t. each array (float32 tensors)."""
    tensors = [tf.constant(a, tf.float32) for a in arrays]
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        value = fn(*tensors)
    grads = tape.gradient(value, tensors)
    return float(value), [None if g is None else g.numpy() for g in grads]


def random(shape, seed):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# ----- NumPy references (loops, straight from the papers) -----------------------------------------
def ref_nt_xent(z1, z2, t):
    z = l2n(np.concatenate([z1, z2]))
    n2 = len(z)
    total = 0.0
    for i in range(n2):
        j = (i + n2 // 2) % n2  # the other view of the same example
        denominator = sum(math.exp(z[i] @ z[k] / t) for k in range(n2) if k != i)
        total += -math.log(math.exp(z[i] @ z[j] / t) / denominator)
    return total / n2


def ref_supcon(views, labels, t):
    z = l2n(np.concatenate(views))
    y = np.tile(np.asarray(labels), len(views))
    per_anchor = []
    for i in range(len(z)):
        positives = [p for p in range(len(z)) if p != i and y[p] == y[i]]
        if not positives:
            continue
        denominator = sum(math.exp(z[i] @ z[a] / t) for a in range(len(z)) if a != i)
        per_anchor.append(
            -np.mean([math.log(math.exp(z[i] @ z[p] / t) / denominator) for p in positives])
        )
    return float(np.mean(per_anchor)) if per_anchor else 0.0


def ref_info_nce(q, k, queue, t):
    q, k, queue = l2n(q), l2n(k), l2n(queue)
    total = 0.0
    for n in range(len(q)):
        logits = [q[n] @ k[n] / t] + [q[n] @ queue[j] / t for j in range(len(queue))]
        total += -logits[0] + math.log(sum(math.exp(x) for x in logits))
    return total / len(q)


def ref_triplet(embeddings, labels, margin, mining):
    e = l2n(embeddings)
    labels = np.asarray(labels)
    b = len(e)

    def d(i, j):
        return float(np.linalg.norm(e[i] - e[j]))

    def positives(a):
        return [p for p in range(b) if p != a and labels[p] == labels[a]]

    def negatives(a):
        return [n for n in range(b) if labels[n] != labels[a]]

    terms = []
    if mining == "batch_hard":
        for a in range(b):
            if positives(a) and negatives(a):
                hardest_p = max(d(a, p) for p in positives(a))
                hardest_n = min(d(a, n) for n in negatives(a))
                terms.append(max(hardest_p - hardest_n + margin, 0.0))
        return float(np.mean(terms)) if terms else 0.0
    if mining == "batch_all":
        for a in range(b):
            for p in positives(a):
                for n in negatives(a):
                    terms.append(max(d(a, p) - d(a, n) + margin, 0.0))
        active = [x for x in terms if x > 0]
        return float(np.mean(active)) if active else 0.0
    assert mining == "semi_hard"
    for a in range(b):
        if not negatives(a):
            continue
        for p in positives(a):
            farther = [d(a, n) for n in negatives(a) if d(a, n) > d(a, p)]
            negative = min(farther) if farther else max(d(a, n) for n in negatives(a))
            terms.append(max(d(a, p) - negative + margin, 0.0))
    return float(np.mean(terms)) if terms else 0.0


# ----- nt_xent ------------------------------------------------------------------------------------
@pytest.mark.parametrize("temperature", [0.5, 0.1])
def test_nt_xent_value_and_gradient_match_loop_reference(temperature):
    z1, z2 = random((5, 4), 0), random((5, 4), 1)
    value, (g1, g2) = tf_value_and_grads(lambda a, b: losses.nt_xent(a, b, temperature), z1, z2)
    np.testing.assert_allclose(value, ref_nt_xent(z1, z2, temperature), **VALUE_TOL)
    np.testing.assert_allclose(
        g1, numeric_grad(lambda x: ref_nt_xent(x, z2, temperature), z1), **GRAD_TOL
    )
    np.testing.assert_allclose(
        g2, numeric_grad(lambda x: ref_nt_xent(z1, x, temperature), z2), **GRAD_TOL
    )


def test_nt_xent_aligned_orthogonal_pairs_have_closed_form_and_beat_random():
    n, t = 4, 0.5
    z = np.eye(n, 8, dtype=np.float32)
    aligned = float(losses.nt_xent(z, z, t))
    # Each anchor: positive similarity 1, the 2N - 2 negatives similarity 0.
    np.testing.assert_allclose(aligned, math.log(1 + (2 * n - 2) * math.exp(-1 / t)), rtol=1e-6)
    assert aligned < float(losses.nt_xent(random((n, 8), 2), random((n, 8), 3), t))


def test_nt_xent_normalises_inside_and_is_float32():
    z1, z2 = random((6, 5), 4), random((6, 5), 5)
    base = losses.nt_xent(z1, z2)
    scaled = losses.nt_xent(3.0 * z1.astype(np.float64), 0.5 * z2.astype(np.float16))
    assert base.dtype == scaled.dtype == tf.float32 and base.shape == ()
    np.testing.assert_allclose(float(scaled), float(base), rtol=1e-3)


def test_nt_xent_accuracy_on_constructed_case():
    # Examples 0, 1: the views agree. Examples 2, 3: view 2 of each equals view 1 of the *other*,
    # so the most similar sample of anchors from 2 and 3 is a wrong one: 4 of 8 anchors right.
    z1 = np.eye(4, dtype=np.float32)
    z2 = z1[[0, 1, 3, 2]]
    loss, accuracy = losses.nt_xent(z1, z2, 0.5, return_accuracy=True)
    assert float(accuracy) == 0.5
    assert float(losses.nt_xent(z1, z1, 0.5, return_accuracy=True)[1]) == 1.0
    np.testing.assert_allclose(float(loss), ref_nt_xent(z1, z2, 0.5), **VALUE_TOL)


# ----- info_nce -----------------------------------------------------------------------------------
def test_info_nce_value_and_gradient_match_reference():
    q, k, queue, t = random((4, 5), 6), random((4, 5), 7), random((6, 5), 8), 0.2
    value, (gq, gk, gqueue) = tf_value_and_grads(
        lambda a, b, c: losses.info_nce(a, b, c, t), q, k, queue
    )
    np.testing.assert_allclose(value, ref_info_nce(q, k, queue, t), **VALUE_TOL)
    np.testing.assert_allclose(
        gq, numeric_grad(lambda x: ref_info_nce(x, k, queue, t), q), **GRAD_TOL
    )
    assert gk is None and gqueue is None  # key and queue are stop-gradient


def test_info_nce_accuracy_on_constructed_case():
    query = np.eye(3, 4, dtype=np.float32)
    key = query.copy()
    key[2] = [0, 0, 0, 1]  # query 2's key is orthogonal to it ...
    queue = np.array([[0, 0, 1, 0]], np.float32)  # ... and a negative equals it: 2 of 3 right
    loss, accuracy = losses.info_nce(query, key, queue, 0.2, return_accuracy=True)
    np.testing.assert_allclose(float(accuracy), 2 / 3, rtol=1e-6)
    np.testing.assert_allclose(float(loss), ref_info_nce(query, key, queue, 0.2), **VALUE_TOL)


# ----- supcon -------------------------------------------------------------------------------------
def test_supcon_value_and_gradient_match_loop_reference():
    z1, z2, labels, t = random((6, 4), 9), random((6, 4), 10), np.array([0, 1, 0, 2, 1, 0]), 0.1
    value, (g1, g2) = tf_value_and_grads(lambda a, b: losses.supcon(a, b, labels, t), z1, z2)
    np.testing.assert_allclose(value, ref_supcon([z1, z2], labels, t), **VALUE_TOL)
    np.testing.assert_allclose(
        g1, numeric_grad(lambda x: ref_supcon([x, z2], labels, t), z1), **GRAD_TOL
    )
    np.testing.assert_allclose(
        g2, numeric_grad(lambda x: ref_supcon([z1, x], labels, t), z2), **GRAD_TOL
    )


def test_supcon_with_distinct_labels_equals_nt_xent():
    # Each anchor's only positive is its other view, and the denominator runs over all 2N - 1
    # other samples: exactly NT-Xent's l(i, j).
    z1, z2 = random((7, 5), 11), random((7, 5), 12)
    for t in (0.1, 0.5):
        np.testing.assert_allclose(
            float(losses.supcon(z1, z2, np.arange(7) * 3, t)),
            float(losses.nt_xent(z1, z2, t)),
            rtol=1e-5,
        )


def test_supcon_single_view_skips_anchors_without_positives():
    z, labels = random((6, 4), 13), np.array([[0], [1], [0], [2], [3], [0]])
    expected = ref_supcon([z], labels[:, 0], 0.1)  # only the three label-0 anchors count
    np.testing.assert_allclose(float(losses.supcon(z, None, labels, 0.1)), expected, **VALUE_TOL)
    # No anchor has a positive: 0, not NaN, with zero gradient.
    value, (grad,) = tf_value_and_grads(lambda a: losses.supcon(a, None, np.arange(6)), z)
    assert value == 0.0 and np.all(grad == 0)


# ----- triplet ------------------------------------------------------------------------------------
@pytest.mark.parametrize("mining", losses.TRIPLET_MINING)
def test_triplet_value_and_gradient_match_loop_reference(mining):
    e = random((8, 3), 14)
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 3])  # label 3 has no positive: ignored as anchor
    margin = 0.3
    value, (grad,) = tf_value_and_grads(lambda x: losses.triplet_loss(x, labels, margin, mining), e)
    assert value > 0
    np.testing.assert_allclose(value, ref_triplet(e, labels, margin, mining), **VALUE_TOL)
    np.testing.assert_allclose(
        grad, numeric_grad(lambda x: ref_triplet(x, labels, margin, mining), e), **GRAD_TOL
    )


def _circle(degrees):
    radians = np.deg2rad(degrees)
    return np.stack([np.cos(radians), np.sin(radians)], axis=1).astype(np.float32)


def test_triplet_mining_on_constructed_case():
    # Points on the unit circle: A=0 deg, B=60 (label 0); C=100, D=220 (label 1).
    # Chord distances 2 sin(delta / 2): AB=1, AC=1.532, AD=1.879, BC=0.684, BD=1.970, CD=1.732.
    e, labels, m = _circle([0, 60, 100, 220]), [0, 0, 1, 1], 0.2

    def chord(delta):
        return 2 * math.sin(math.radians(delta) / 2)

    ab, ac, ad, bc, bd, cd = (chord(x) for x in (60, 100, 140, 40, 160, 120))

    def hinge(x):
        return max(x + m, 0.0)

    # batch_hard: per anchor (farthest positive, nearest negative) = A:(B,C) B:(A,C) C:(D,B) D:(C,A)
    hard = np.mean([hinge(ab - ac), hinge(ab - bc), hinge(cd - bc), hinge(cd - ad)])
    # batch_all: the 8 triplets; four are active (B,A,C) (C,D,A) (C,D,B) (D,C,A).
    active = [hinge(ab - bc), hinge(cd - ac), hinge(cd - bc), hinge(cd - ad)]
    assert all(x > 0 for x in active) and hinge(cd - bd) == hinge(ab - ac) == 0
    # semi_hard: (A,B) -> C (nearest farther than B), (B,A) -> D, (C,D) -> no negative is
    # farther than D, so the farthest one, A; (D,C) -> A (nearest of A, B farther than C).
    semi = np.mean([hinge(ab - ac), hinge(ab - bd), hinge(cd - ac), hinge(cd - ad)])
    expected = {"batch_hard": hard, "batch_all": np.mean(active), "semi_hard": semi}
    for mining, value in expected.items():
        np.testing.assert_allclose(
            float(losses.triplet_loss(e, labels, m, mining)), value, rtol=1e-5, err_msg=mining
        )
    assert expected["semi_hard"] < expected["batch_hard"]


@pytest.mark.parametrize("mining", losses.TRIPLET_MINING)
def test_triplet_without_valid_triplets_is_zero_not_nan(mining):
    e = random((5, 3), 15)
    for labels in (np.zeros(5, int), np.arange(5)):  # no negative / no positive anywhere
        value, (grad,) = tf_value_and_grads(
            lambda x, y=labels: losses.triplet_loss(x, y, 0.2, mining), e
        )
        assert value == 0.0 and np.all(grad == 0), (mining, labels)
    # Well separated classes: every triplet satisfied, loss 0 with a finite (zero) gradient.
    e = np.repeat(np.eye(2, 3, dtype=np.float32), 3, axis=0)  # identical points within a class
    value, (grad,) = tf_value_and_grads(
        lambda x: losses.triplet_loss(x, [0, 0, 0, 1, 1, 1], 0.2, mining), e
    )
    assert value == 0.0 and np.all(np.isfinite(grad))


# ----- masked_reconstruction ----------------------------------------------------------------------
def test_masked_reconstruction_value_gradient_and_unmasked_pixels():
    target, prediction = random((2, 3, 3, 2), 16), random((2, 3, 3, 2), 17)
    mask = (np.random.default_rng(18).random((2, 3, 3, 1)) < 0.5).astype(np.float32)
    mask[0, 0, 0, 0] = 1.0
    value, (grad,) = tf_value_and_grads(
        lambda p: losses.masked_reconstruction(target, p, mask), prediction
    )
    full_mask = np.broadcast_to(mask, target.shape)
    diff = prediction.astype(np.float64) - target
    np.testing.assert_allclose(value, (full_mask * diff**2).sum() / full_mask.sum(), **VALUE_TOL)
    np.testing.assert_allclose(grad, 2 * diff * full_mask / full_mask.sum(), **GRAD_TOL)
    assert np.all(grad[full_mask == 0] == 0)
    # A same-shape mask gives the same; no mask is the plain mean.
    np.testing.assert_allclose(
        float(losses.masked_reconstruction(target, prediction, full_mask)), value, rtol=1e-6
    )
    np.testing.assert_allclose(
        float(losses.masked_reconstruction(target, prediction)), np.mean(diff**2), rtol=1e-5
    )


def test_masked_reconstruction_all_zero_mask_is_safe():
    target, prediction = random((2, 4, 4, 3), 19), random((2, 4, 4, 3), 20)
    value, (grad,) = tf_value_and_grads(
        lambda p: losses.masked_reconstruction(target, p, np.zeros((2, 4, 4, 1))), prediction
    )
    assert value == 0.0 and np.all(grad == 0)


def test_masked_reconstruction_rejects_mismatched_shapes():
    x = np.zeros((2, 4, 4, 3), np.float32)
    with pytest.raises(KerasSSLError, match=r"mask\[\.\.\., None\]"):
        losses.masked_reconstruction(x, x, np.zeros((2, 4, 4)))
    with pytest.raises(KerasSSLError, match="same shape"):
        losses.masked_reconstruction(x, x[..., :1])


# ----- masked_token_loss --------------------------------------------------------------------------
def test_masked_token_loss_value_gradient_and_accuracy():
    rng = np.random.default_rng(21)
    logits = random((2, 5, 7), 22)
    labels = rng.integers(0, 7, (2, 5))
    mask = np.array([[1, 0, 1, 0, 0], [0, 1, 1, 0, 1]], np.float32)
    labels_with_filler = np.where(mask > 0, labels, -100)  # unmasked labels must be ignored
    labels_with_filler[0, 2] = np.argmax(logits[0, 2])  # two masked hits, known accuracy
    labels_with_filler[1, 4] = np.argmax(logits[1, 4])
    labels[0, 2], labels[1, 4] = labels_with_filler[0, 2], labels_with_filler[1, 4]

    x = tf.constant(logits)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss, accuracy = losses.masked_token_loss(labels_with_filler, x, mask, return_accuracy=True)
    grad = tape.gradient(loss, x).numpy()

    logits64 = logits.astype(np.float64)
    log_softmax = logits64 - np.log(np.exp(logits64).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_softmax, labels[..., None], -1)[..., 0]
    np.testing.assert_allclose(float(loss), (nll * mask).sum() / mask.sum(), **VALUE_TOL)
    hits = (np.argmax(logits, -1) == labels) & (mask > 0)
    assert hits.sum() >= 2
    np.testing.assert_allclose(float(accuracy), hits.sum() / mask.sum(), rtol=1e-6)
    expected_grad = (np.exp(log_softmax) - np.eye(7)[labels]) * mask[..., None] / mask.sum()
    np.testing.assert_allclose(grad, expected_grad, **GRAD_TOL)

    loss, accuracy = losses.masked_token_loss(labels_with_filler, logits, np.zeros((2, 5)),
                                              return_accuracy=True)
    assert float(loss) == 0.0 and float(accuracy) == 0.0


def test_masked_token_loss_rejects_one_hot_labels():
    with pytest.raises(KerasSSLError, match="token ids"):
        losses.masked_token_loss(np.zeros((2, 5, 7)), np.zeros((2, 5, 7)), np.ones((2, 5)))


# ----- XLA ----------------------------------------------------------------------------------------
def test_losses_compile_with_xla_and_match_eager():
    z1, z2, queue = random((6, 4), 23), random((6, 4), 24), random((5, 4), 25)
    labels = np.array([0, 1, 0, 1, 2, 2])
    image, recon = random((2, 4, 4, 3), 26), random((2, 4, 4, 3), 27)
    mask = np.ones((2, 4, 4, 1), np.float32)
    calls = {
        "nt_xent": lambda: losses.nt_xent(z1, z2, 0.5, return_accuracy=True),
        "info_nce": lambda: losses.info_nce(z1, z2, queue, 0.2, return_accuracy=True),
        "supcon": lambda: losses.supcon(z1, z2, labels),
        **{m: (lambda m=m: losses.triplet_loss(z1, labels, 0.2, m)) for m in losses.TRIPLET_MINING},
        "masked_reconstruction": lambda: losses.masked_reconstruction(image, recon, mask),
        "masked_token_loss": lambda: losses.masked_token_loss(labels[None], z1[None], labels[None]),
    }
    for name, call in calls.items():
        compiled = tf.function(call, jit_compile=True)
        np.testing.assert_allclose(
            np.array(compiled(), dtype=np.float64),
            np.array(call(), dtype=np.float64),
            rtol=1e-5,
            atol=1e-6,
            err_msg=name,
        )


# ----- errors -------------------------------------------------------------------------------------
Z = np.ones((4, 3), np.float32)


@pytest.mark.parametrize("temperature", [0, -0.5, float("nan"), float("inf"), None, "0.5", True])
@pytest.mark.parametrize(
    "loss",
    [
        lambda t: losses.nt_xent(Z, Z, t),
        lambda t: losses.info_nce(Z, Z, Z, t),
        lambda t: losses.supcon(Z, Z, [0, 1, 0, 1], t),
    ],
    ids=["nt_xent", "info_nce", "supcon"],
)
def test_bad_temperature_raises(loss, temperature):
    with pytest.raises(KerasSSLError, match="temperature.*Use e.g."):
        loss(temperature)


def test_bad_triplet_settings_raise():
    with pytest.raises(KerasSSLError, match="margin=0.2"):
        losses.triplet_loss(Z, [0, 0, 1, 1], margin=-0.1)
    with pytest.raises(KerasSSLError, match="batch_hard, batch_all, semi_hard"):
        losses.triplet_loss(Z, [0, 0, 1, 1], mining="hardest")


def test_temperature_tensor_is_accepted_and_checks_are_exported():
    t = tf.Variable(0.5)
    np.testing.assert_allclose(
        float(losses.nt_xent(Z, Z + 0.1, t)), float(losses.nt_xent(Z, Z + 0.1, 0.5)), rtol=1e-6
    )
    losses.check_temperature(np.float32(0.1))
    with pytest.raises(KerasSSLError):
        losses.check_temperature(np.float64(-1.0))
    losses.check_margin(0)
    losses.check_mining("semi_hard")


def test_bad_shapes_raise():
    with pytest.raises(KerasSSLError, match="same shape"):
        losses.nt_xent(np.ones((4, 3)), np.ones((4, 5)))
    with pytest.raises(KerasSSLError, match=r"\[batch, dim\]"):
        losses.nt_xent(np.ones((4, 3, 1)), np.ones((4, 3, 1)))
    with pytest.raises(KerasSSLError, match="one label per example"):
        losses.supcon(Z, Z, [0, 1, 2])
    with pytest.raises(KerasSSLError, match="argmax"):
        losses.triplet_loss(Z, np.eye(4))
    with pytest.raises(KerasSSLError, match="projection size"):
        losses.info_nce(Z, Z, np.ones((5, 2)))
