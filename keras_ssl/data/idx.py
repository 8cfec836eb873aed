"""Folders of MNIST-style idx files (`train-images-idx3-ubyte[.gz]`, ...)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from keras_ssl.data.arrays import load_arrays
from keras_ssl.data.base import SSLData
from keras_ssl.errors import KerasSSLError

# idx type codes (http://yann.lecun.com/exdb/mnist/): big-endian payloads.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_FILES = {
    "x_train": ("train-images", "idx3"),
    "y_train": ("train-labels", "idx1"),
    "x_test": ("t10k-images", "idx3"),
    "y_test": ("t10k-labels", "idx1"),
}


def find_idx_files(folder: Path) -> dict:
    found = {}
    for key, (stem, idx) in _IDX_FILES.items():
        found[key] = None
        for sep in ("-", "."):
            for ext in (".gz", ""):
                candidate = folder / f"{stem}{sep}{idx}-ubyte{ext}"
                if candidate.is_file():
                    found[key] = candidate
                    break
            if found[key] is not None:
                break
    return found


def read_idx(path: Path) -> np.ndarray:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError) as e:
        raise KerasSSLError(
            f"Could not read the idx file {path} ({e}); replace it with a good copy."
        ) from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise KerasSSLError(
            f"{path} is not an idx file (bad magic number); replace it with a good copy."
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise KerasSSLError(f"{path} has a truncated idx header; replace it with a good copy.")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(data) - header != expected:
        raise KerasSSLError(
            f"{path} is truncated or corrupt: its header promises {dims} = {expected} bytes of data, "
            f"but it holds {len(data) - header}. Replace it with a good copy."
        )
    return np.frombuffer(data, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def load_idx_folder(folder: Path, **opts) -> SSLData:
    files = find_idx_files(folder)
    if files["y_train"] is None:
        raise KerasSSLError(
            f"{folder} has {files['x_train'].name} but no train-labels-idx1-ubyte[.gz] beside it."
        )
    if (files["x_test"] is None) != (files["y_test"] is None):
        have, missing = ("x_test", "y_test") if files["x_test"] else ("y_test", "x_test")
        raise KerasSSLError(
            f"{folder} has {files[have].name} but not its partner "
            f"{_IDX_FILES[missing][0]}-{_IDX_FILES[missing][1]}-ubyte[.gz]; add it or remove "
            f"{files[have].name}."
        )
    arrays = {key: (None if path is None else read_idx(path)) for key, path in files.items()}
    name = folder.name
    for key in ("x_train", "x_test"):
        if arrays[key] is not None and arrays[key].ndim != 3:
            raise KerasSSLError(
                f"{files[key]} holds shape {arrays[key].shape}, expected images [N, H, W]."
            )
    return load_arrays(
        {
            "x": arrays["x_train"],
            "y": arrays["y_train"],
            "x_test": arrays["x_test"],
            "y_test": arrays["y_test"],
        },
        name=name,
        **opts,
    )
