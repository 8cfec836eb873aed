"""
# RotNet: learn by predicting rotations

Every image is shown turned by 0, 90, 180 and 270 degrees and the network predicts which turn it
sees (Gidaris et al. 2018): to do so it must learn what upright objects look like. The four
rotations are made in the graph, per image, inside `train_step`.

    python examples/rotnet.py            # digits, a few minutes on 2 CPU cores
    python examples/rotnet.py --quick    # seconds (what the tests run)

The same run from the shell: `keras-ssl pretrain --method rotnet --data digits`.
"""

import sys

import keras_ssl

QUICK = "--quick" in sys.argv

# ## Train
# Each image becomes 4 rotated copies, so the batch is smaller than SimCLR's.
result = keras_ssl.pretrain(
    "rotnet", "digits",
    max_examples=256 if QUICK else None, epochs=1 if QUICK else 30,
    batch_size=32 if QUICK else 128, width=8 if QUICK else None,
    verbose=2,
)

# ## Evaluate
# The representation (kNN, linear probe) and the pretext task itself (rotation accuracy).
print(result.table())
metric = next(k for k in result.history.history if "accuracy" in k)
print(f"{metric} (pretext, last epoch): {result.history.history[metric][-1]:.3f}")
