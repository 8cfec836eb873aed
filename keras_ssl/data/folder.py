"""Folders of images: class sub-folders (labelled) or a flat folder (unlabelled)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from keras_ssl.data.base import IMAGE_EXTENSIONS, SSLData
from keras_ssl.data.convert import split_indices
from keras_ssl.errors import KerasSSLError

# Above this many pixels per image, folder decoding uses threads (PIL releases the GIL while it
# decodes); below it, the per-image Python overhead dominates and threads only add contention.
_THREADED_DECODE_PIXELS = 128 * 128


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def _list_image_folder(root: Path):
    """(files, labels or None, class_names or None, skipped files)."""
    entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    subdirs = [p for p in entries if p.is_dir()]
    loose = [p for p in entries if p.is_file()]

    def is_image(p: Path) -> bool:
        return p.suffix.lower() in IMAGE_EXTENSIONS

    files, labels, class_names, skipped, empty = [], [], [], [], []
    for d in subdirs:
        members = sorted(p for p in d.rglob("*") if p.is_file() and _visible(p, root))
        images = [p for p in members if is_image(p)]
        skipped += [p for p in members if not is_image(p)]
        if not images:
            empty.append(d.name)
            continue
        labels += [len(class_names)] * len(images)
        class_names.append(d.name)
        files += images
    if files:
        skipped += loose
        if empty:
            warnings.warn(
                f"{root}: ignoring {len(empty)} class folder(s) without images: {', '.join(empty[:5])}.",
                stacklevel=4,
            )
        return files, np.asarray(labels, np.int64), class_names, skipped
    # A flat folder of images: no labels.
    files = [p for p in loose if is_image(p)]
    skipped = [p for p in loose if not is_image(p)] + skipped
    return files, None, None, skipped


def _decode_image(path: Path, size):
    """One image file -> uint8 array [H, W] (grayscale) or [H, W, 3] (colour)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if size is not None and im.format == "JPEG":
                # Let libjpeg decode at a reduced scale (never below the target size): much faster
                # for large photos that are shrunk anyway.
                im.draft(im.mode, (size[1], size[0]))
            im.load()
            mode = im.mode
            if mode in ("L", "1", "LA", "La") or (mode == "P" and _palette_is_gray(im)):
                im = im.convert("L")
            elif mode.startswith("I") or mode == "F":
                arr = np.asarray(im).astype(np.float64)
                peak = 65535.0 if arr.max() > 255 else 255.0
                im = Image.fromarray(
                    np.clip(np.round(arr * (255.0 / peak)), 0, 255).astype(np.uint8)
                )
            elif mode != "RGB":
                im = im.convert("RGB")
            if size is not None and im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except Exception as e:  # UnidentifiedImageError, truncated file, decompression bomb, ...
        raise KerasSSLError(
            f"Could not decode the image {path} ({type(e).__name__}: {e}). Remove or replace it."
        ) from e


def _palette_is_gray(im) -> bool:
    if im.mode != "P":
        return False
    palette = im.getpalette() or []
    rgb = np.asarray(palette[: len(palette) // 3 * 3]).reshape(-1, 3)
    return bool(len(rgb)) and bool((rgb == rgb[:, :1]).all())


def _decode_all(files, size) -> list:
    first = _decode_image(files[0], size)
    rest = files[1:]
    if (
        first.shape[0] * first.shape[1] >= _THREADED_DECODE_PIXELS
        and len(rest) > 1
        and (os.cpu_count() or 1) > 1
    ):
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            return [first, *pool.map(lambda f: _decode_image(f, size), rest)]
    return [first, *(_decode_image(f, size) for f in rest)]


def _stack_images(arrays, files) -> np.ndarray:
    sizes = [a.shape[:2] for a in arrays]
    for f, s in zip(files, sizes, strict=True):
        if s != sizes[0]:
            raise KerasSSLError(
                f"The images have different sizes: {files[0]} is {sizes[0][1]}x{sizes[0][0]} but "
                f"{f} is {s[1]}x{s[0]} (width x height). Pass image_size=(H, W) (--image-size) to "
                "resize them all to one size."
            )
    if all(a.ndim == 2 for a in arrays):
        return np.stack(arrays)[..., np.newaxis]
    # Mixed grayscale and colour: make everything RGB.
    return np.stack(
        [np.repeat(a[..., np.newaxis], 3, axis=-1) if a.ndim == 2 else a for a in arrays]
    )


def load_image_folder(root: Path, *, test_fraction, seed, image_size, max_examples) -> SSLData:
    files, labels, class_names, skipped = _list_image_folder(root)
    if skipped:
        warnings.warn(
            f"{root}: skipped {len(skipped)} file(s) that are not {'/'.join(e[1:] for e in IMAGE_EXTENSIONS)} "
            f"images (or lie loose beside the class folders), e.g. {skipped[0]}.",
            stacklevel=3,
        )
    if not files:
        raise KerasSSLError(
            f"No images ({', '.join(IMAGE_EXTENSIONS)}) in the folder {root}. Expected "
            f"{root}/<class>/<image> (labelled) or images directly in {root} (unlabelled)."
        )
    name = root.resolve().name or str(root)
    train, test = split_indices(
        len(files), labels, test_fraction, seed, max_examples, name, shuffle=True
    )
    chosen = [*train, *([] if test is None else test)]
    chosen_files = [files[i] for i in chosen]
    images = _stack_images(_decode_all(chosen_files, image_size), chosen_files)
    x, x_test = images[: len(train)], (None if test is None else images[len(train) :])
    y = None if labels is None else labels[train]
    y_test = None if labels is None or test is None else labels[test]
    return SSLData(x, y, x_test, y_test, kind="images", name=name, class_names=class_names)
