"""Plots: pictures of what a model does, saved as PNG files (matplotlib, no display needed).

- `save_reconstructions(model, images, path)`: an autoencoder's inputs, corrupted inputs and
  reconstructions as a grid.
- `plot_embeddings_tsne(embeddings, labels, path)`: a t-SNE map of embeddings, coloured by label.
- `plot_history(history, path)`: loss and accuracy (held-out kNN, probe, pretext) curves.
- `plot_augmented_views(augmenter, images, path)`: a grid of random views of a few images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from keras_ssl.errors import KerasSSLError

# Every image is drawn in a CELL_INCHES square at DPI dots per inch, plus one label column.
CELL_INCHES = 1.0
DPI = 100
ROWS = ("input", "corrupted", "reconstruction")


def save_reconstructions(model, images, path, n: int = 8, seed: int = 0) -> Path:
    """Save a PNG grid: a row of inputs, a row of corrupted inputs, a row of reconstructions.

    Args:
        model: a `keras_ssl.AutoEncoder` (anything with `reconstruct(images, seed)`), on images.
        images: `[N, H, W, C]` uint8 or [0, 1] float images; the first `n` are drawn.
        path: the PNG file to write (its folder is created).
        n: how many images (columns).
        seed: seed of the corruption, so the same call draws the same masks or noise.

    Returns:
        The path written. The picture is `(n + 1) * 100` by `300` pixels: 100 px per image and a
        first column with the row names.

    Example:
    >>> import numpy as np, keras_ssl
    >>> from keras_ssl.plot import save_reconstructions
    >>> model = keras_ssl.AutoEncoder(keras_ssl.encoders.ConvNet((32, 32, 1), width=8),
    ...                               corruption="mask")
    >>> images = np.random.randint(0, 256, (8, 32, 32, 1), dtype="uint8")
    >>> save_reconstructions(model, images, "/tmp/reconstructions.png").name
    'reconstructions.png'
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not hasattr(model, "reconstruct"):
        raise KerasSSLError(
            f"save_reconstructions needs an autoencoder (keras_ssl.AutoEncoder), got "
            f"{type(model).__name__}."
        )
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise KerasSSLError(
            f"save_reconstructions draws images [N, H, W, C] with C in (1, 3), got shape "
            f"{images.shape}; reconstructions of feature vectors have no picture."
        )
    n = min(int(n), len(images))
    if n < 1:
        raise KerasSSLError("save_reconstructions got no images to draw.")
    out = model.reconstruct(images[:n], seed=seed)
    rows = [out["clean"], out["corrupted"], out["reconstruction"]]

    # A bare Figure with its own Agg canvas: no pyplot, so no global backend or open windows.
    figure = Figure(figsize=((n + 1) * CELL_INCHES, len(ROWS) * CELL_INCHES), dpi=DPI)
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(len(ROWS), n + 1, left=0, right=1, bottom=0, top=1,
                               wspace=0.05, hspace=0.05)
    for r, (title, batch) in enumerate(zip(ROWS, rows, strict=True)):
        label = figure.add_subplot(grid[r, 0])
        label.axis("off")
        label.text(0.95, 0.5, title, ha="right", va="center", fontsize=9)
        for c in range(n):
            axis = figure.add_subplot(grid[r, c + 1])
            axis.axis("off")
            picture = np.clip(batch[c], 0.0, 1.0)
            if picture.shape[-1] == 1:
                axis.imshow(picture[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
            else:
                axis.imshow(picture)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=DPI)
    return path


# ----- embeddings, training curves, augmented views -------------------------------------------
def _figure(width_inches: float, height_inches: float):
    """A bare Figure on its own Agg canvas (no pyplot: no global backend, no open windows)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_inches, height_inches), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path) -> Path:
    path = Path(path)
    if path.is_dir():
        raise KerasSSLError(f"{str(path)!r} is a folder; give the PNG file to write.")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=DPI)
    return path


def _draw_image(axis, image) -> None:
    axis.axis("off")
    picture = np.clip(np.asarray(image, dtype="float32"), 0.0, 1.0)
    if picture.shape[-1] == 1:
        axis.imshow(picture[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
    else:
        axis.imshow(picture)


def plot_embeddings_tsne(embeddings, labels, path, max_points: int = 2000, seed: int = 0,
                         class_names=None, title: str | None = None) -> Path:
    """Save a 2-D t-SNE map (scikit-learn) of embeddings, one colour per class label.

    Good features put examples of a class close together: the map shows one tight island per
    class; a random encoder gives islands for the easy classes at best.

    Args:
        embeddings: `[N, D]` feature vectors (e.g. `keras_ssl.evaluate.embed(model, x)`).
        labels: `[N]` integer class labels (colours).
        path: the PNG file to write (its folder is created).
        max_points: t-SNE is quadratic-ish in N; a random subset of this many points is drawn.
        seed: seed of the subset and of t-SNE.
        class_names: optional legend names, index i naming label i.
        title: optional title.

    Returns:
        The path written: a 700 x 600 px PNG.

    Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(60, 8)); y = np.arange(60) % 3
    >>> plot_embeddings_tsne(x + 5 * y[:, None], y, "/tmp/tsne.png").name
    'tsne.png'
    """
    from sklearn.manifold import TSNE

    embeddings = np.asarray(embeddings, dtype="float32")
    labels = np.asarray(labels).reshape(-1)
    if embeddings.ndim != 2 or len(embeddings) != len(labels):
        raise KerasSSLError(
            f"plot_embeddings_tsne takes embeddings [N, D] and N labels, got shapes "
            f"{embeddings.shape} and {labels.shape}."
        )
    if len(embeddings) < 5:
        raise KerasSSLError(f"t-SNE needs at least 5 points, got {len(embeddings)}.")
    rng = np.random.default_rng(seed)
    if len(embeddings) > max_points:
        keep = np.sort(rng.choice(len(embeddings), max_points, replace=False))
        embeddings, labels = embeddings[keep], labels[keep]
    # Perplexity must stay below the number of points; 30 is scikit-learn's default.
    perplexity = float(min(30.0, (len(embeddings) - 1) / 3))
    points = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
                  learning_rate="auto").fit_transform(embeddings)

    figure = _figure(7.0, 6.0)
    axis = figure.add_axes((0.03, 0.03, 0.74, 0.9 if title else 0.94))
    classes = np.unique(labels)
    colours = _class_colours(len(classes))
    for colour, label in zip(colours, classes, strict=True):
        chosen = labels == label
        name = class_names[int(label)] if class_names is not None else str(label)
        axis.scatter(points[chosen, 0], points[chosen, 1], s=6, color=colour, label=name,
                     alpha=0.8, linewidths=0)
    axis.set_xticks([])
    axis.set_yticks([])
    if title:
        axis.set_title(title, fontsize=10)
    figure.legend(*axis.get_legend_handles_labels(), loc="center left",
                  bbox_to_anchor=(0.78, 0.5), fontsize=8, markerscale=3, frameon=False,
                  title="label")
    return _save(figure, path)


def _class_colours(n: int):
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20" if n <= 20 else "turbo"]
    if n <= 20:
        return [cmap(i) for i in range(n)]
    return [cmap(i / max(n - 1, 1)) for i in range(n)]


def _history_dict(history) -> dict:
    if hasattr(history, "history"):
        history = history.history
    if not isinstance(history, dict):
        raise KerasSSLError(
            f"plot_history takes a keras History (what fit returns) or its .history dict, got "
            f"{type(history).__name__}."
        )
    return history


def plot_history(history, path, knn=None, title: str | None = None) -> Path:
    """Save training curves: losses on the left, accuracies (kNN, probe, pretext) on the right.

    Args:
        history: what `model.fit` returns (a `keras.callbacks.History`) or its `.history` dict.
        path: the PNG file to write.
        knn: held-out kNN accuracy per epoch: a `callbacks.KNNMonitor` (its `scores`) or a dict
            `{epoch: accuracy}` (epoch 0: before training). Default: `val_knn_accuracy` from the
            history when it has one entry per epoch.
        title: optional title.

    Returns:
        The path written: a 1000 x 400 px PNG.

    Example:
    >>> plot_history({"loss": [3.0, 2.5, 2.2]}, "/tmp/history.png", knn={0: 0.3, 3: 0.6}).name
    'history.png'
    """
    history = _history_dict(history)
    epochs_run = len(history.get("loss", []))
    if hasattr(knn, "scores"):
        knn = knn.scores
    knn = dict(knn or {})
    if not knn and "val_knn_accuracy" in history and len(history["val_knn_accuracy"]) == epochs_run:
        knn = {i + 1: v for i, v in enumerate(history["val_knn_accuracy"])}
    loss_keys = [k for k in history if k.endswith("loss")]
    accuracy_keys = [k for k in history if "accuracy" in k and k != "val_knn_accuracy"]
    if not loss_keys and not knn:
        raise KerasSSLError("plot_history found no loss and no kNN accuracy to draw.")

    figure = _figure(10.0, 4.0)
    losses, accuracies = figure.subplots(1, 2)
    for key in loss_keys:
        values = history[key]
        losses.plot(range(1, len(values) + 1), values, marker="." if len(values) < 30 else None,
                    label=key)
    losses.set(xlabel="epoch", ylabel="loss", title="loss")
    for key in accuracy_keys:
        values = history[key]
        accuracies.plot(range(1, len(values) + 1), values, label=key, alpha=0.8)
    if knn:
        epochs = sorted(knn)
        accuracies.plot(epochs, [knn[e] for e in epochs], marker="o", color="black",
                        label="held-out kNN accuracy")
    accuracies.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0.0, 1.0))
    for axis in (losses, accuracies):
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return _save(figure, path)


def plot_augmented_views(augmenter, images, path, n_views: int = 6, n_images: int = 6) -> Path:
    """Save a grid of what an augmentation recipe does: each row an image and `n_views` views.

    All views come from one call of the augmenter on the images repeated `n_views` times, so the
    grid also shows that every image draws its own random parameters.

    Args:
        augmenter: a Keras layer making random views (e.g. `keras_ssl.augment.simclr(32)` or a
            method's `model.augmenter`).
        images: `[N, H, W, C]` uint8 or [0, 1] float images; the first `n_images` are drawn.
        path: the PNG file to write.
        n_views: views per image (columns after the original).
        n_images: images (rows).

    Returns:
        The path written: `(n_views + 1) * 100` by `n_images * 100 + 30` px (a header row).
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise KerasSSLError(
            f"plot_augmented_views draws images [N, H, W, C] with C in (1, 3), got shape "
            f"{images.shape}; augmented feature vectors have no picture."
        )
    n_images = min(int(n_images), len(images))
    if n_images < 1 or n_views < 1:
        raise KerasSSLError("plot_augmented_views needs at least one image and one view.")
    images = images[:n_images]
    originals = images.astype("float32") / 255.0 if images.dtype == np.uint8 else images
    views = np.asarray(augmenter(np.concatenate([images] * n_views), training=True))
    views = views.reshape(n_views, n_images, *views.shape[1:])

    header = 0.3
    height = n_images * CELL_INCHES + header
    figure = _figure((n_views + 1) * CELL_INCHES, height)
    grid = figure.add_gridspec(n_images, n_views + 1, left=0, right=1, bottom=0,
                               top=1 - header / height, wspace=0.05, hspace=0.05)
    for column in range(n_views + 1):
        x = (column + 0.5) / (n_views + 1)
        name = "original" if column == 0 else f"view {column}"
        figure.text(x, 1 - header / height / 2, name, ha="center", va="center", fontsize=9)
    for row in range(n_images):
        _draw_image(figure.add_subplot(grid[row, 0]), originals[row])
        for v in range(n_views):
            _draw_image(figure.add_subplot(grid[row, v + 1]), views[v, row])
    return _save(figure, path)


def write_run_plots(folder, model, data, split, history, knn, before, examples,
                    points: int = 2000) -> list:
    """The plots of a pretraining run, as PNGs in `folder`: training curves (with the kNN
    accuracies `knn` by epoch), t-SNE maps of held-out embeddings before (`before`) and after
    training, and, from `examples` (an array of inputs), augmented views and, for models that
    reconstruct images, reconstructions."""
    from keras_ssl import evaluate

    folder = Path(folder)
    name = f"{type(model).__name__} / {model.encoder.name}"
    written = []
    if history is not None and history.history:
        written.append(plot_history(history, folder / "history.png", knn=knn,
                                    title=f"{name} on {data.name}"))
    if split and before is not None:
        labels = split[3][:points]
        for file, embeddings, when in (
            ("tsne_random_init.png", before, "random init"),
            ("tsne.png", evaluate.embed(model, split[2][:points]), "trained"),
        ):
            written.append(plot_embeddings_tsne(
                embeddings, labels, folder / file, class_names=data.class_names,
                title=f"{name} ({when}): t-SNE of {len(labels)} held-out {data.name} examples"))
    images = examples
    if data.kind == "images" and getattr(model, "augmenter", None) is not None:
        written.append(plot_augmented_views(model.augmenter, images,
                                            folder / "augmented_views.png"))
    if data.kind == "images" and hasattr(model, "reconstruct"):
        written.append(save_reconstructions(model, images, folder / "reconstructions.png"))
    if written:
        print(f"Wrote {', '.join(str(p) for p in written)}")
    return written
