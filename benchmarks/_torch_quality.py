"""PyTorch SimCLR trained for T minutes: the side-by-side reference `quality.py` scores.

`quality.py` runs this file in a process of its own, so that PyTorch has the cores to itself
(TensorFlow and Keras are never imported here). It reads uint8 NHWC images from an .npz
(`x_train` for SSL training, `x_memory` and `x_test` to score), trains SimCLR (encoder from
`_torch_reference.encoders`, keras_ssl's projection head, NT-Xent, constant-rate Adam, the SimCLR
CIFAR-10 augmentation done batched in PyTorch) until the wall-clock budget is spent, and writes
the encoder's features of `x_memory` and `x_test` before and after training to another .npz
(`before_memory`, `before_test`, `after_memory`, `after_test`, float32) with the scalars `steps`,
`epochs`, `train_seconds`, `final_loss`, `threads` and `torch_version`. It ends by printing
`RESULT {json}` with those scalars. One-channel images are repeated to three (the stems take RGB).

    python benchmarks/_torch_quality.py --data in.npz --out out.npz --minutes 10
    python benchmarks/_torch_quality.py --data in.npz --out out.npz --minutes 0.05 \\
        --batch-size 16 --encoder kerasio
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import NoReturn

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from _torch_reference import KINDS, encoders, nt_xent, projection_head  # noqa: E402

ARRAYS = ("x_train", "x_memory", "x_test")
LUMA = (0.299, 0.587, 0.114)
RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322],
                           [0.211, -0.523, 0.312]])


def fail(message: str) -> NoReturn:
    print(f"_torch_quality.py: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def uniform(low: float, high: float, n: int) -> torch.Tensor:
    return low + (high - low) * torch.rand(n)


def gray(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) luma of (N, 3, H, W) RGB."""
    return torch.einsum("c,nchw->nhw", torch.tensor(LUMA), x).unsqueeze(1)


def crop_and_flip(x: torch.Tensor) -> torch.Tensor:
    """Random resized crop (area 8-100 %, aspect 3/4-4/3) and horizontal flip, one per image."""
    n, _, h, w = x.shape
    area, ratio = uniform(0.08, 1.0, n), torch.exp(uniform(math.log(3 / 4), math.log(4 / 3), n))
    # Box sides as fractions of the image's; torchvision re-draws boxes that do not fit (10 tries),
    # we clamp them instead, which only trims the largest, most elongated boxes.
    fw = torch.sqrt(area * ratio * h / w).clamp(max=1.0)
    fh = torch.sqrt(area / ratio * w / h).clamp(max=1.0)
    x0, y0 = torch.rand(n) * (1 - fw), torch.rand(n) * (1 - fh)
    flip = torch.where(torch.rand(n) < 0.5, -1.0, 1.0)
    zero = torch.zeros(n)
    # theta maps output coordinates in [-1, 1] to input ones: scale by the box's side, move to its
    # centre; a negative x scale mirrors the crop.
    theta = torch.stack([torch.stack([fw * flip, zero, 2 * x0 + fw - 1], 1),
                         torch.stack([zero, fh, 2 * y0 + fh - 1], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # "border": samples within half a pixel of the image's edge must not blend in zeros.
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def color_jitter(x: torch.Tensor, strength: float, p: float = 0.8) -> torch.Tensor:
    """Brightness, contrast, saturation, hue with probability p per image, clamped after each.

    torchvision applies the four in a random order; this uses a fixed one. Images left alone get
    the identity factors (1, 1, 1, 0) instead of a branch, so the batch stays one tensor op."""
    n = x.shape[0]
    apply = torch.rand(n) < p
    lo, hi = 1 - 0.8 * strength, 1 + 0.8 * strength

    def factor(low: float, high: float, identity: float) -> torch.Tensor:
        return torch.where(apply, uniform(low, high, n), identity).view(n, 1, 1, 1)

    x = (x * factor(lo, hi, 1.0)).clamp(0, 1)  # brightness
    mean = gray(x).mean((1, 2, 3), keepdim=True)
    x = ((x - mean) * factor(lo, hi, 1.0) + mean).clamp(0, 1)  # contrast, about the mean luma
    g = gray(x)
    x = ((x - g) * factor(lo, hi, 1.0) + g).clamp(0, 1)  # saturation, about the pixel's luma
    # Hue: rotate the chroma plane (I, Q) of YIQ by a fraction of a turn, one 3x3 per image.
    angle = 2 * math.pi * factor(-0.2 * strength, 0.2 * strength, 0.0).view(n)
    cos, sin, zero, one = torch.cos(angle), torch.sin(angle), torch.zeros(n), torch.ones(n)
    rotate = torch.stack([torch.stack([one, zero, zero], 1), torch.stack([zero, cos, -sin], 1),
                          torch.stack([zero, sin, cos], 1)], 1)
    matrix = torch.linalg.inv(RGB_TO_YIQ) @ rotate @ RGB_TO_YIQ
    return torch.einsum("nij,njhw->nihw", matrix, x).clamp(0, 1)


def augment(x: torch.Tensor, strength: float) -> torch.Tensor:
    """One SimCLR CIFAR-10 view of each image (Chen et al. 2020, appendix A; no blur at 32 px)."""
    x = color_jitter(crop_and_flip(x), strength)
    to_gray = (torch.rand(x.shape[0]) < 0.2).view(-1, 1, 1, 1)
    return torch.where(to_gray, gray(x).expand_as(x), x)


def to_float(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [0, 1], three channels."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255)
    return x.expand(-1, 3, -1, -1).contiguous()


@torch.no_grad()
def features(encoder: nn.Module, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    encoder.eval()
    chunks = [encoder(to_float(images[i:i + batch_size])).numpy()
              for i in range(0, len(images), batch_size)]
    encoder.train()
    return np.concatenate(chunks).astype(np.float32)


def load(path: Path, batch_size: int) -> dict[str, np.ndarray]:
    if not path.is_file():
        fail(f"--data {path}: no such file")
    with np.load(path) as data:
        missing = [k for k in ARRAYS if k not in data.files]
        if missing:
            fail(f"--data {path} lacks {', '.join(missing)} (it has {', '.join(data.files)}); "
                 f"write uint8 NHWC arrays {', '.join(ARRAYS)} with np.savez")
        arrays = {k: data[k] for k in ARRAYS}
    for key, x in arrays.items():
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[3] not in (1, 3) or not len(x):
            fail(f"{key} is {x.dtype} of shape {x.shape}: expected uint8 (N, H, W, 1 or 3), N > 0")
        if x.shape[1:] != arrays["x_train"].shape[1:] or x.shape[1] != x.shape[2]:
            fail(f"{key} has images of {x.shape[1:]}, x_train of {arrays['x_train'].shape[1:]}: "
                 "all three must hold square images of one size")
    if len(arrays["x_train"]) < batch_size:
        fail(f"x_train holds {len(arrays['x_train'])} images, fewer than one batch of "
             f"{batch_size}: pass a smaller --batch-size or more images")
    return arrays


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="PyTorch SimCLR trained for --minutes; writes features before and after.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--data", type=Path, required=True,
                        help="input .npz with uint8 NHWC x_train, x_memory, x_test")
    parser.add_argument("--out", type=Path, required=True,
                        help="output .npz (written atomically: a temporary file, then renamed)")
    parser.add_argument("--minutes", type=float, required=True,
                        help="wall-clock training budget, first (warm-up) step not counted")
    parser.add_argument("--batch-size", type=int, default=256, help="images per step (256)")
    parser.add_argument("--learning-rate", type=float, default=1e-3,
                        help="Adam's learning rate, constant (1e-3)")
    parser.add_argument("--temperature", type=float, default=0.5, help="NT-Xent temperature (0.5)")
    parser.add_argument("--strength", type=float, default=0.5,
                        help="colour jitter strength s: factors in 1 +- 0.8 s, hue +- 0.2 s (0.5)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seeds the weights, the augmentation and the shuffling (0)")
    parser.add_argument("--encoder", choices=KINDS, default="resnet18",
                        help="ResNet-18 with the small-image stem, or keras-io's 4-conv (resnet18)")
    args = parser.parse_args(argv)
    for name, value, ok in [("--minutes", args.minutes, args.minutes >= 0),
                            ("--batch-size", args.batch_size, args.batch_size >= 1),
                            ("--temperature", args.temperature, args.temperature > 0)]:
        if not ok:
            fail(f"{name} {value}: must be positive (--minutes may be 0: one untimed step)")
    data = load(args.data, args.batch_size)
    if args.encoder == "kerasio" and data["x_train"].shape[1] < 31:
        fail(f"--encoder kerasio needs images of 31 px or more (its 4 valid stride-2 convolutions), "
             f"these are {data['x_train'].shape[1]} px: use --encoder resnet18")

    torch.manual_seed(args.seed)
    shuffle = np.random.default_rng(args.seed)
    encoder, dim = encoders()[args.encoder](data["x_train"].shape[1])
    model = nn.Sequential(encoder, projection_head(dim))
    before = {"before_memory": features(encoder, data["x_memory"]),
              "before_test": features(encoder, data["x_test"])}

    optimizer = torch.optim.Adam(model.parameters(), args.learning_rate)
    n, b = len(data["x_train"]), args.batch_size
    model.train()
    steps, loss, start = 0, float("nan"), None
    budget = 60 * args.minutes
    while start is None or time.perf_counter() - start < budget:
        order = shuffle.permutation(n)
        for i in range(n // b):  # the last partial batch is dropped
            x = to_float(data["x_train"][order[i * b:(i + 1) * b]])
            views = torch.cat([augment(x, args.strength), augment(x, args.strength)])
            step_loss = nt_xent(model(views), args.temperature)
            optimizer.zero_grad(set_to_none=True)
            step_loss.backward()
            optimizer.step()
            loss, steps = float(step_loss.detach()), steps + 1
            if start is None:  # the clock starts after the first step, which warms up
                start = time.perf_counter()
            if time.perf_counter() - start >= budget:
                break
    train_seconds = time.perf_counter() - start

    scalars = {"steps": steps, "epochs": steps * b / n, "train_seconds": train_seconds,
               "final_loss": loss, "threads": torch.get_num_threads(),
               "torch_version": torch.__version__}
    after = {"after_memory": features(encoder, data["x_memory"]),
             "after_test": features(encoder, data["x_test"])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.out.with_name(f".{args.out.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as f:  # a file object: np.savez would append .npz to a name
        np.savez(f, **before, **after, **{k: np.array(v) for k, v in scalars.items()})
    os.replace(temporary, args.out)
    print("RESULT " + json.dumps(scalars), flush=True)


if __name__ == "__main__":
    main()
