"""Losses without negatives: BYOL, SimSiam, Barlow Twins, VICReg and DINO.

Same conventions as the contrastive losses: tensors in, float32 inside, a scalar out, static
shapes (they compile under XLA). Under `tf.distribute`:

- `byol`, `simsiam` and `dino` are means over examples: each replica returns the mean over its
  own examples, and the mean over replicas is the loss of one device on the global batch.
- `barlow_twins` and `vicreg` need statistics of the whole batch (cross-correlation, variance,
  covariance). They all-gather the embeddings of every replica (differentiably) and each replica
  returns the loss of the *global* batch; since `all_gather`'s gradient sums every replica's
  contribution back onto the local rows, the gradients summed across replicas of
  `loss / num_replicas` (what `SelfSupervisedModel.train_step` applies) equal one device's.
- `dino_center` is the all-reduced mean of the teacher's outputs that DINO's centre follows.
"""

from __future__ import annotations

import tensorflow as tf

from keras_ssl.errors import KerasSSLError
from keras_ssl.losses._common import (
    as_embeddings,
    check_same_shape,
    check_temperature,
    cross_replica_context,
    gather,
    normalize,
)
from keras_ssl.validate import check_number


def _cosine(p, z):
    """Row-wise cosine similarity of p with stop_gradient(z)."""
    return tf.reduce_sum(normalize(p) * tf.stop_gradient(normalize(z)), axis=-1)


def _pair(p1, p2, z1, z2):
    p1, p2 = as_embeddings(p1, "p1"), as_embeddings(p2, "p2")
    z1, z2 = as_embeddings(z1, "z1"), as_embeddings(z2, "z2")
    for a, b, names in ((p1, p2, "p1 and p2"), (p1, z1, "p1 and z1"), (z1, z2, "z1 and z2")):
        check_same_shape(a, b, names)
    return p1, p2, z1, z2


def byol(p1, p2, z1, z2):
    r"""BYOL's symmetric loss (Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020, eq. 2).

    With p the online predictions and z the target projections (stop-gradient) of the two views,

        L = mean_n (2 - 2 cos(p1_n, z2_n)) + mean_n (2 - 2 cos(p2_n, z1_n))

    (2 - 2 cos is the squared distance of the L2-normalised vectors); it lies in [0, 8].

    Args:
        p1, p2: `[N, D]` online predictions of view 1 and view 2.
        z1, z2: `[N, D]` target projections of view 1 and view 2 (no gradient flows into them).

    Returns:
        The scalar float32 loss.
    """
    p1, p2, z1, z2 = _pair(p1, p2, z1, z2)
    return tf.reduce_mean(2.0 - 2.0 * _cosine(p1, z2)) + tf.reduce_mean(2.0 - 2.0 * _cosine(p2, z1))


def simsiam(p1, p2, z1, z2):
    r"""SimSiam's symmetric negative cosine (Chen & He, "Exploring Simple Siamese Representation
    Learning", CVPR 2021, eq. 2-4): L = D(p1, sg(z2)) / 2 + D(p2, sg(z1)) / 2, D = -cos.

    It lies in [-1, 1]; -1 when every prediction points along the other view's projection.

    Args:
        p1, p2: `[N, D]` predictor outputs of the two views.
        z1, z2: `[N, D]` projections of the two views (stop-gradient inside).

    Returns:
        The scalar float32 loss.
    """
    p1, p2, z1, z2 = _pair(p1, p2, z1, z2)
    return -0.5 * tf.reduce_mean(_cosine(p1, z2)) - 0.5 * tf.reduce_mean(_cosine(p2, z1))


def _global_pair(z1, z2):
    z1, z2 = as_embeddings(z1, "z1"), as_embeddings(z2, "z2")
    check_same_shape(z1, z2, "z1 and z2")
    (z1, z2), _ = gather(cross_replica_context(), [z1, z2])
    return z1, z2


def _off_diagonal_sum_of_squares(matrix):
    return tf.reduce_sum(tf.square(matrix)) - tf.reduce_sum(tf.square(tf.linalg.diag_part(matrix)))


def barlow_twins(z1, z2, lambda_=5e-3):
    r"""Barlow Twins (Zbontar et al., ICML 2021, eq. 1-2).

    Each embedding dimension is batch-normalised over the global batch (mean 0, biased variance
    1, epsilon 1e-5, no affine: the reference's `BatchNorm1d(affine=False)` under SyncBN), then

        C_ij = sum_n z1n_i z2n_j / N,    L = sum_i (1 - C_ii)^2 + lambda sum_{i != j} C_ij^2

    Args:
        z1, z2: `[N, D]` projections of the two views (N: the local batch; the other replicas'
            rows are gathered).
        lambda_: weight of the off-diagonal (redundancy reduction) term, 5e-3 in the paper.

    Returns:
        The scalar float32 loss of the global batch.
    """
    lambda_ = check_number(lambda_, "lambda_", least=0.0,
                           hint="Barlow Twins weighs the off-diagonal terms by 5e-3.")
    z1, z2 = _global_pair(z1, z2)
    n = tf.cast(tf.shape(z1)[0], tf.float32)

    def batch_norm(z):
        mean, variance = tf.nn.moments(z, axes=[0])
        return (z - mean) * tf.math.rsqrt(variance + 1e-5)

    c = tf.matmul(batch_norm(z1), batch_norm(z2), transpose_a=True) / n
    on_diagonal = tf.reduce_sum(tf.square(1.0 - tf.linalg.diag_part(c)))
    return on_diagonal + lambda_ * _off_diagonal_sum_of_squares(c)


def vicreg(z1, z2, invariance=25.0, variance=25.0, covariance=1.0, return_terms: bool = False):
    r"""VICReg (Bardes, Ponce, LeCun, ICLR 2022, eq. 1-6), as facebookresearch/vicreg computes it.

        inv = mean_{n,d} (z1 - z2)^2
        var = mean_d relu(1 - sqrt(Var_n z1_d + 1e-4)) / 2 + (same for z2) / 2   (unbiased Var)
        cov = sum_{i != j} C(z1)_ij^2 / D + sum_{i != j} C(z2)_ij^2 / D,  C = Z^T Z / (N - 1), Z centred
        L = invariance * inv + variance * var + covariance * cov

    Every term is computed over the global batch (rows of the other replicas gathered).

    Args:
        z1, z2: `[N, D]` expander outputs of the two views.
        invariance, variance, covariance: the weights (25, 25, 1 in the paper).
        return_terms: also return the unweighted `(inv, var, cov)`.

    Returns:
        The scalar float32 loss, or `(loss, (inv, var, cov))` when `return_terms`.
    """
    weights = [check_number(w, name, least=0.0, hint="VICReg uses 25, 25 and 1.")
               for w, name in ((invariance, "invariance"), (variance, "variance"),
                               (covariance, "covariance"))]
    z1, z2 = _global_pair(z1, z2)
    n = tf.cast(tf.shape(z1)[0], tf.float32)
    dim = tf.cast(tf.shape(z1)[1], tf.float32)
    inv = tf.reduce_mean(tf.square(z1 - z2))
    var = cov = 0.0
    for z in (z1, z2):
        z = z - tf.reduce_mean(z, axis=0)
        std = tf.sqrt(tf.reduce_sum(tf.square(z), axis=0) / (n - 1.0) + 1e-4)
        var += tf.reduce_mean(tf.nn.relu(1.0 - std)) / 2.0
        cov += _off_diagonal_sum_of_squares(tf.matmul(z, z, transpose_a=True) / (n - 1.0)) / dim
    loss = weights[0] * inv + weights[1] * var + weights[2] * cov
    return (loss, (inv, var, cov)) if return_terms else loss


def dino(student_logits, teacher_logits, center, student_temperature=0.1,
         teacher_temperature=0.04):
    r"""DINO's cross-entropy between sharpened, centred teacher and student distributions.

    Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", ICCV 2021,
    eq. 2-3 and Algorithm 1, as facebookresearch/dino's `DINOLoss`: with
    P_t = softmax((t - center) / teacher_temperature) (stop-gradient) for each of the teacher's
    (global) views and log P_s = log_softmax(s / student_temperature) for each student view,

        L = mean over pairs (teacher view a, student view v), v != a, of
            mean_n sum_k -P_t(a)_nk log P_s(v)_nk

    The first `len(teacher_logits)` student views must be the same (global) views as the
    teacher's, in the same order; each is skipped against its own teacher view.

    Args:
        student_logits: list of `[N, K]` student outputs, global views first, then local views.
        teacher_logits: list of `[N, K]` teacher outputs of the global views.
        center: `[K]` (or `[1, K]`) centre subtracted from the teacher's outputs.
        student_temperature: 0.1 in the paper.
        teacher_temperature: a number or a scalar tensor (the warm-up schedule's value).

    Returns:
        The scalar float32 loss (the mean over this replica's examples).
    """
    check_temperature(student_temperature, "student_temperature")
    check_temperature(teacher_temperature, "teacher_temperature")
    students = [as_embeddings(s, "student_logits") for s in student_logits]
    teachers = [as_embeddings(t, "teacher_logits") for t in teacher_logits]
    if not teachers or len(students) < len(teachers) or len(students) < 2:
        raise KerasSSLError(
            f"dino needs at least one teacher view and two student views, the teacher's first; "
            f"got {len(teachers)} teacher and {len(students)} student views."
        )
    for s in students + teachers:
        check_same_shape(students[0], s, "every student and teacher output")
    center = tf.reshape(tf.cast(center, tf.float32), [1, -1])
    t_temp = tf.cast(teacher_temperature, tf.float32)
    log_p = [tf.nn.log_softmax(s / tf.cast(student_temperature, tf.float32), axis=-1)
             for s in students]
    total, terms = 0.0, 0
    for a, t in enumerate(teachers):
        q = tf.stop_gradient(tf.nn.softmax((t - center) / t_temp, axis=-1))
        for v, lp in enumerate(log_p):
            if v == a:
                continue
            total += tf.reduce_mean(tf.reduce_sum(-q * lp, axis=-1))
            terms += 1
    return total / terms


def dino_center(teacher_logits):
    """The mean teacher output `[K]` over every view and the global batch (all-reduced)."""
    teachers = tf.concat([as_embeddings(t, "teacher_logits") for t in teacher_logits], axis=0)
    teachers = tf.stop_gradient(teachers)
    total = tf.reduce_sum(teachers, axis=0)
    count = tf.cast(tf.shape(teachers)[0], tf.float32)
    ctx = cross_replica_context()
    if ctx is not None:
        total, count = ctx.all_reduce(tf.distribute.ReduceOp.SUM, [total, count])
    return total / count


__all__ = ["barlow_twins", "byol", "dino", "dino_center", "simsiam", "vicreg"]
