"""Each image method family learns something on a small fixed data set, with a margin that could fail.

The data: scikit-learn's 1,797 digits (shipped with scikit-learn, no download), resized to
16 x 16, 1,437 for training and 360 held out (stratified, seed 0). For the methods that learn an
embedding, the encoder's kNN accuracy (k = 20, cosine) on the held-out digits must beat the same
encoder at its random initialisation; MAE, whose mean-pooled ViT tokens are a weak kNN feature
after seconds of training, must instead reconstruct the masked patches of held-out digits better
than the best guess that ignores the visible ones (zero, the mean of a normalised patch).

Features are computed with the batch-norm statistics of the embedded set itself (one batch,
`training=True`), for the random and the trained encoder alike: after a few dozen steps the moving
averages (momentum 0.99) still hold mostly their initial values, and an encoder evaluated with
them mixes trained weights with untrained statistics. The measured gains are in
docs/reliability.md ("Does it learn?").
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_ssl
from keras_ssl import data, encoders, evaluate, training

# family -> (method, ConvNet width, epochs, peak learning rate, required gain in kNN accuracy)
KNN_CASES = {
    "contrastive": ("simclr", 4, 2, 5e-3, 0.10),
    "negative_free": ("simsiam", 4, 2, 5e-3, 0.08),
    "redundancy_reduction": ("barlow_twins", 4, 2, 5e-3, 0.06),
    "self_distillation": ("dino", 4, 2, 5e-3, 0.04),
    "transformation_prediction": ("rotnet", 8, 8, 2e-3, 0.025),
    "reconstruction": ("denoising", 4, 2, 5e-3, 0.15),
}


@pytest.fixture(scope="module")
def digits():
    return data.load("digits", image_size=16, seed=0)


def _knn(encoder, digits) -> float:
    def features(x):
        return np.asarray(encoder(x, training=True))  # the set's own batch-norm statistics

    return evaluate.knn_accuracy(features(digits.x_train), digits.y_train,
                                 features(digits.x_test), digits.y_test, k=20)


def _fit(model, digits, epochs, learning_rate):
    steps = epochs * (len(digits.x_train) // 64)
    model.compile(optimizer=training.default_optimizer(learning_rate, total_steps=steps))
    model.fit(digits.x_train, batch_size=64, epochs=epochs, verbose=0, shuffle=True)


@pytest.mark.parametrize("family", sorted(KNN_CASES))
def test_training_beats_random_init(family, digits):
    name, width, epochs, learning_rate, margin = KNN_CASES[family]
    keras.utils.set_random_seed(0)
    encoder = encoders.ConvNet((16, 16, 1), width=width)
    cls, preset = keras_ssl.METHODS[name]
    model = cls(encoder, seed=0, **preset)
    random_init = _knn(encoder, digits)
    _fit(model, digits, epochs, learning_rate)
    trained = _knn(encoder, digits)
    print(f"{family} ({name}): kNN accuracy {random_init:.3f} at random init, {trained:.3f} "
          f"after {epochs} epochs")
    assert np.isfinite(trained)
    assert trained >= random_init + margin, (
        f"{name} did not learn: kNN accuracy {trained:.3f} after training, {random_init:.3f} at "
        f"random init (needs +{margin})")


def test_masked_image_modelling_reconstructs_held_out_patches(digits):
    """MAE on a small ViT: held-out masked-patch error at most 90% of the zero guess's."""
    keras.utils.set_random_seed(0)
    encoder = encoders.ViT((16, 16, 1), patch_size=4, hidden_dim=32, num_layers=2, num_heads=2,
                           mlp_dim=64)
    cls, preset = keras_ssl.METHODS["mae"]
    model = cls(encoder, seed=0, **preset)
    _fit(model, digits, epochs=4, learning_rate=2e-3)
    held_out = model.evaluate(digits.x_test, batch_size=120, verbose=0, return_dict=True)["loss"]
    zero_guess = float(np.mean(np.square(model.targets(digits.x_test))))
    print(f"masked image modelling (mae): held-out loss {held_out:.3f}, zero guess {zero_guess:.3f}")
    assert held_out <= 0.9 * zero_guess, (
        f"MAE did not learn: held-out masked-patch loss {held_out:.3f}, zero guess "
        f"{zero_guess:.3f} (needs <= 90% of it)")
