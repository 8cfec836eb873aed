"""In-graph label makers for pretext tasks: rotations, jigsaw puzzles and patch masks.

Every function here is plain TensorFlow that works on a whole batch at once: per-image random
choices are drawn as `[N, ...]` tensors with one stateless op, never with a Python loop,
`tf.map_fn` or `vectorized_map`. All of it compiles with `tf.function(jit_compile=True)` on CPU
(static H, W, C; the batch size may be dynamic), so it can live inside a method's `train_step`.

Randomness is stateless: pass `seed` as a `[2]` integer tensor (e.g. the output of
`keras.random.SeedGenerator(...).next()`, which a Keras model draws anew every step) or a Python
int; the same seed gives the same output. `seed=None` draws a fresh seed from TensorFlow's global
generator on every call (not reproducible).

- `rotate(images, k)`, `four_rotations(images)`: RotNet (Gidaris et al., 2018).
- `jigsaw_permutations(num_tiles, count, seed)`, `make_puzzle(images, grid, ...)`: jigsaw puzzles
  (Noroozi & Favaro, 2016).
- `random_patch_mask(images_or_shape, patch_size, mask_ratio, seed)`: MAE-style patch masks
  (He et al., 2022).
- `mask_tokens(token_ids, mask_rate, mask_token_id=, vocab_size=, ...)`: BERT's masked tokens
  (Devlin et al., 2019).
"""

from keras_ssl.pretext.jigsaw import MIN_CELL_SIZE, jigsaw_permutations, make_puzzle
from keras_ssl.pretext.masks import random_patch_mask
from keras_ssl.pretext.rotation import four_rotations, rotate, rotation_lookalikes
from keras_ssl.pretext.tokens import mask_tokens

__all__ = [
    "MIN_CELL_SIZE",
    "four_rotations",
    "jigsaw_permutations",
    "make_puzzle",
    "mask_tokens",
    "random_patch_mask",
    "rotate",
    "rotation_lookalikes",
]
