"""
# Masked image autoencoder

75% of each image's patches are hidden (a different random set per image, drawn in the graph)
and a ConvNet encoder with a small decoder fills them in; the loss counts the hidden pixels only
(after MAE, He et al. 2022, with a convolutional encoder that sees the grey-filled image; the
`mae` method drops the hidden patches from a ViT instead).

    python examples/masked_autoencoder.py                  # digits, a few minutes on 2 CPU cores
    python examples/masked_autoencoder.py --quick          # seconds (what the tests run)
    python examples/masked_autoencoder.py --plots plots    # and a grid of reconstructions

The same run from the shell: `keras-ssl pretrain --method masked --data digits --plots plots`.
"""

import sys

import keras_ssl

QUICK = "--quick" in sys.argv
PLOTS = sys.argv[sys.argv.index("--plots") + 1] if "--plots" in sys.argv else None

# ## Train
# `masked` is `keras_ssl.AutoEncoder(corruption="mask", mask_ratio=0.75)`; with `plots` the run
# writes its training curves, t-SNE maps and a grid of masked inputs and reconstructions.
result = keras_ssl.pretrain(
    "masked", "digits",
    max_examples=256 if QUICK else None, epochs=1 if QUICK else 40,
    batch_size=64 if QUICK else 256, width=8 if QUICK else None,
    plots=PLOTS, verbose=2,
)

# ## Evaluate
print(result.table())
print(f"reconstruction error (last epoch): "
      f"{result.history.history['reconstruction_error'][-1]:.4f}")
