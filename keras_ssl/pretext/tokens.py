"""BERT's masked tokens: 80% [mask], 10% a random token, 10% unchanged (Devlin et al., 2019)."""

from __future__ import annotations

import tensorflow as tf

from keras_ssl.errors import KerasSSLError
from keras_ssl.pretext._common import split_seed, uniform_int
from keras_ssl.validate import check_fraction, check_int


def mask_tokens(
    token_ids,
    mask_rate: float = 0.15,
    *,
    mask_token_id: int,
    vocab_size: int,
    first_token_id: int = 1,
    seed=None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """BERT's masked-language-model corruption of a batch of token sequences, per sequence.

    Tokens with ids below `first_token_id` are special (padding 0, OOV, the mask token, ...): they
    are never chosen and never drawn as replacements. In each sequence with n ordinary tokens,
    `floor(mask_rate * n + u)` of them (u uniform in [0, 1): the expected count is exactly
    `mask_rate * n`, and it is never off by a whole token) are chosen uniformly at random. Of the
    chosen tokens, 80% become `mask_token_id`, 10% a random ordinary token and 10% stay as they
    are (Devlin et al., 2019); the loss is computed at all of them.

    Args:
        token_ids: `[N, L]` integer token ids, 0 = padding.
        mask_rate: the fraction of ordinary tokens chosen per sequence, in (0, 1); BERT uses 0.15.
        mask_token_id: the id that replaces most chosen tokens (`[MASK]`).
        vocab_size: the number of ids; random replacements are drawn from
            `[first_token_id, vocab_size)`.
        first_token_id: the smallest ordinary (maskable) id, at least 1.
        seed: `None`, a Python int or a `[2]` integer stateless seed.

    Returns:
        `(corrupted_ids, mask)`: the ids to feed the encoder (dtype of `token_ids`), and a
        `[N, L]` float32 mask, 1.0 at the chosen positions (the prediction targets).

    Example:
    >>> ids = tf.constant([[5, 6, 7, 8, 9, 10, 11, 12, 0, 0]])
    >>> corrupted, mask = mask_tokens(ids, 0.5, mask_token_id=2, vocab_size=20, first_token_id=3,
    ...                               seed=0)
    >>> int(tf.reduce_sum(mask)), float(tf.reduce_sum(mask[:, 8:]))
    (4, 0.0)
    """
    token_ids = tf.convert_to_tensor(token_ids)
    if token_ids.shape.rank != 2 or not token_ids.dtype.is_integer:
        raise KerasSSLError(
            f"mask_tokens takes a batch of token ids [N, L] of an integer dtype, got shape "
            f"{token_ids.shape} and dtype {token_ids.dtype.name}. Turn text into ids first (e.g. "
            f"keras_ssl.data.text.load(...).x_train)."
        )
    check_fraction(mask_rate, "mask_tokens: mask_rate", "the fraction of tokens to predict; BERT "
                   "uses 0.15")
    for name, value in (
        ("mask_token_id", mask_token_id),
        ("vocab_size", vocab_size),
        ("first_token_id", first_token_id),
    ):
        check_int(value, f"mask_tokens: {name}")
    if not 1 <= first_token_id < vocab_size:
        raise KerasSSLError(
            f"mask_tokens: first_token_id={first_token_id} must be at least 1 (0 is padding) and "
            f"below vocab_size={vocab_size}, so that some ordinary tokens exist."
        )
    if not 0 <= mask_token_id < vocab_size:
        raise KerasSSLError(
            f"mask_tokens: mask_token_id={mask_token_id} is outside the vocabulary [0, {vocab_size})."
        )

    shape = tf.shape(token_ids)
    count_seed, order_seed, action_seed, token_seed = split_seed(seed, 4)
    eligible = token_ids >= first_token_id
    num_eligible = tf.reduce_sum(tf.cast(eligible, tf.float32), axis=1)
    # Stochastic rounding: exact in expectation for every sequence length (BERT rounds to the
    # nearest count and masks at least one token, which over-masks short sequences).
    fraction = tf.cast(uniform_int(shape[:1], count_seed, 0, 2**24), tf.float32) / 2.0**24
    num_chosen = tf.floor(float(mask_rate) * num_eligible + fraction)
    # Rank the positions by random keys, special tokens last, and choose the first num_chosen:
    # ranks from a double argsort are a permutation, so ties in the keys cannot change the count.
    keys = tf.where(eligible, uniform_int(shape, order_seed, 0, 2**30), -1)
    ranks = tf.argsort(tf.argsort(keys, axis=1, direction="DESCENDING"), axis=1)
    chosen = tf.logical_and(eligible, tf.cast(ranks, tf.float32) < num_chosen[:, None])
    action = uniform_int(shape, action_seed, 0, 10)  # 0-7: [MASK], 8: random token, 9: keep
    random_ids = tf.cast(uniform_int(shape, token_seed, first_token_id, vocab_size), token_ids.dtype)
    replaced = tf.where(
        action < 8,
        tf.cast(tf.fill(shape, mask_token_id), token_ids.dtype),
        tf.where(action < 9, random_ids, token_ids),
    )
    corrupted = tf.where(chosen, replaced, token_ids)
    return corrupted, tf.cast(chosen, tf.float32)
