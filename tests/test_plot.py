"""Plots: PNG files of the promised size that show what they should (t-SNE, curves, views)."""

import struct

import keras
import numpy as np
import pytest
from matplotlib import colormaps
from matplotlib.image import imread
from threadpoolctl import threadpool_limits

from keras_ssl import augment, plot
from keras_ssl.cli import main
from keras_ssl.errors import KerasSSLError


def _png_size(path):
    """(width, height) from the PNG header."""
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def _has_colour(pixels, rgb, tolerance=0.02):
    return bool(np.any(np.all(np.abs(pixels[..., :3] - np.asarray(rgb)[:3]) < tolerance, axis=-1)))


@pytest.fixture(autouse=True)
def _one_openmp_thread():
    # scikit-learn's Barnes-Hut t-SNE runs OpenMP threads that stall at every barrier on a
    # shared, busy CPU (10x slower here); one thread keeps these tests fast.
    with threadpool_limits(1):
        yield


def test_tsne_png_has_one_colour_per_class(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.arange(300) % 3
    embeddings = rng.normal(size=(300, 16)) + 8.0 * np.eye(16)[labels]
    path = plot.plot_embeddings_tsne(embeddings, labels, tmp_path / "sub" / "tsne.png",
                                     max_points=150, title="blobs")
    assert path.stat().st_size > 5000 and _png_size(path) == (700, 600)
    pixels = imread(path)
    # A point is its class colour at alpha 0.8 over the white background.
    colour = [0.8 * np.asarray(colormaps["tab10"](i)[:3]) + 0.2 for i in range(4)]
    assert all(_has_colour(pixels, colour[i]) for i in range(3))  # the three classes are drawn
    assert not _has_colour(pixels, colour[3])  # and no fourth


def test_tsne_rejects_mismatched_inputs(tmp_path):
    with pytest.raises(KerasSSLError, match="N labels"):
        plot.plot_embeddings_tsne(np.zeros((10, 4)), np.zeros(9), tmp_path / "x.png")
    with pytest.raises(KerasSSLError, match="at least 5 points"):
        plot.plot_embeddings_tsne(np.zeros((3, 4)), np.zeros(3), tmp_path / "x.png")


def test_history_png_from_a_fit_and_from_a_dict(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    history = model.fit(np.ones((8, 2)), np.ones((8, 1)), epochs=3, verbose=0)
    path = plot.plot_history(history, tmp_path / "fit.png", knn={0: 0.2, 2: 0.5, 3: 0.6})
    assert _png_size(path) == (1000, 400) and path.stat().st_size > 5000
    # A val_knn_accuracy entry per epoch is drawn without a separate knn argument.
    path = plot.plot_history({"loss": [2.0, 1.5], "val_knn_accuracy": [0.4, 0.7]},
                             tmp_path / "dict.png")
    assert _has_colour(imread(path), (0.0, 0.0, 0.0))  # the black kNN curve
    with pytest.raises(KerasSSLError, match="History"):
        plot.plot_history([1.0, 2.0], tmp_path / "bad.png")
    with pytest.raises(KerasSSLError, match="no loss"):
        plot.plot_history({}, tmp_path / "empty.png")


def test_augmented_views_png_shows_different_views_of_each_image(tmp_path, textured_images):
    images = textured_images(3, size=32, channels=3)
    path = plot.plot_augmented_views(augment.simclr(32, seed=0), images, tmp_path / "views.png",
                                     n_views=4, n_images=3)
    assert _png_size(path) == (500, 330)
    pixels = imread(path)[..., :3]

    def cell(row, column):  # the middle of a cell, away from the gaps between cells
        top, left = 30 + row * 100, column * 100
        return pixels[top + 20 : top + 80, left + 20 : left + 80]

    for row in range(3):
        views = [cell(row, c) for c in range(1, 5)]
        assert all(np.abs(views[0] - v).mean() > 0.02 for v in views[1:]), row
    # Column 0 is the image itself, unchanged.
    assert np.abs(cell(0, 0) - cell(1, 0)).mean() > 0.05


def test_augmented_views_refuses_vectors(tmp_path):
    with pytest.raises(KerasSSLError, match="feature vectors have no picture"):
        plot.plot_augmented_views(augment.vectors(), np.zeros((4, 8), "float32"),
                                  tmp_path / "v.png")


def test_cli_plots_writes_every_picture(tmp_path, capsys):
    folder = tmp_path / "plots"
    assert main(["pretrain", "--data", "digits", "--max-examples", "256", "--epochs", "2",
                 "--batch-size", "64", "--width", "4", "--encoder", "convnet", "--knn-every", "1",
                 "--plots", str(folder), "--verbose", "0"]) == 0
    sizes = {p.name: _png_size(p) for p in folder.glob("*.png")}
    assert sizes == {
        "history.png": (1000, 400),
        "tsne_random_init.png": (700, 600),
        "tsne.png": (700, 600),
        "augmented_views.png": (700, 630),
    }
    assert "Wrote" in capsys.readouterr().out


@pytest.mark.slow
def test_cli_plots_draws_reconstructions_for_autoencoders(tmp_path):
    folder = tmp_path / "plots"
    assert main(["pretrain", "--method", "masked", "--data", "digits", "--max-examples", "128",
                 "--epochs", "1", "--batch-size", "64", "--width", "4", "--encoder", "convnet",
                 "--knn-every", "0", "--plots", str(folder), "--verbose", "0"]) == 0
    assert (folder / "reconstructions.png").stat().st_size > 1000
