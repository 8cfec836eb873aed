"""
# Jigsaw puzzles

Each image is cut into a grid of tiles, shuffled by one of a set of far-apart permutations, and
the network predicts which permutation it sees (Noroozi and Favaro 2016). Tiles are cut with
random gaps and colour tricks, in the graph, per image.

    python examples/jigsaw.py            # digits, a few minutes on 2 CPU cores
    python examples/jigsaw.py --quick    # seconds (what the tests run)

The same run from the shell: `keras-ssl pretrain --method jigsaw --data digits`.
"""

import sys

import keras_ssl

QUICK = "--quick" in sys.argv

# ## Train
# Below 64 px the grid is 2 x 2 (3 x 3 tiles of 32 px images would be 8 px each); 100
# permutations as in the paper, or all 24 of a 2 x 2 grid.
result = keras_ssl.pretrain(
    "jigsaw", "digits",
    max_examples=256 if QUICK else None, epochs=1 if QUICK else 30,
    batch_size=32 if QUICK else 128, width=8 if QUICK else None,
    verbose=2,
)
model = result.model
print(f"puzzle: {model.grid}x{model.grid} tiles of {model.tile_shape}")

# ## Evaluate
print(result.table())
print(f"jigsaw accuracy (pretext, last epoch): {result.history.history['jigsaw_accuracy'][-1]:.3f}")
