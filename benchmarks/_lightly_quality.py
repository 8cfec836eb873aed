"""lightly's own SimSiam and BYOL for a fixed number of steps: the references `feature_share.py
--reference` scores beside keras_ssl's methods.

Built with lightly's classes, not copies of them, as lightly's examples build each method
(`examples/pytorch/simsiam.py`, `byol.py`): `SimSiamProjectionHead(D, 512, 128)` and
`SimSiamPredictionHead(128, 64, 128)`, or `BYOLProjectionHead(D, 1024, 256)` and
`BYOLPredictionHead(256, 1024, 256)` with a momentum copy updated by `update_momentum` on
`cosine_schedule(step, steps, 0.996, 1)`; `NegativeCosineSimilarity`, symmetric. The encoder is
keras_ssl's ConvNet written in PyTorch (`_torch_reference.encoders()["convnet"]`, D = 4 x width)
so that only the implementation differs; the views are lightly's `SimCLRTransform(input_size,
cj_strength=0.5, gaussian_blur=0.0)` (its CIFAR-10 benchmark's) on PIL images in a `DataLoader`.
The optimizer is lightly's CIFAR-10 benchmark's, SGD at 0.06 x batch / 128 with momentum 0.9 and
weight decay 5e-4 on a cosine schedule over `--steps` (`--optimizer adamw`: keras_ssl's, AdamW
at 2e-3, weight decay 1e-4, 5 % linear warm-up, then cosine).

`feature_share.py` runs this file with an interpreter that has torch and lightly
(`--torch-python`; TensorFlow is never imported here). It reads uint8 NHWC images from an .npz
(`x_train` to train on, `x_memory` and `x_test` to score; one channel is repeated to three) and
writes the encoder's features of `x_memory` and `x_test` before training and every `--every`
steps (`memory_<step>`, `test_<step>`, float32, from step 0) and `torch_version`.

    python benchmarks/_lightly_quality.py --method simsiam --data in.npz --out out.npz \\
        --steps 120 --every 40
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from _lightly_reference import _Images  # noqa: E402
from _torch_reference import encoders  # noqa: E402

METHODS = ("simsiam", "byol")
ARRAYS = ("x_train", "x_memory", "x_test")


class SimSiam(nn.Module):
    def __init__(self, encoder, dim):
        from lightly.models.modules import SimSiamPredictionHead, SimSiamProjectionHead

        super().__init__()
        self.encoder = encoder
        self.projection_head = SimSiamProjectionHead(dim, 512, 128)
        self.prediction_head = SimSiamPredictionHead(128, 64, 128)

    def pair(self, x):
        z = self.projection_head(self.encoder(x))
        return z.detach(), self.prediction_head(z)

    def loss(self, criterion, x0, x1, step, steps):
        del step, steps
        (z0, p0), (z1, p1) = self.pair(x0), self.pair(x1)
        return 0.5 * (criterion(z0, p1) + criterion(z1, p0))


class BYOL(nn.Module):
    def __init__(self, encoder, dim):
        import copy

        from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
        from lightly.models.utils import deactivate_requires_grad

        super().__init__()
        self.encoder = encoder
        self.projection_head = BYOLProjectionHead(dim, 1024, 256)
        self.prediction_head = BYOLPredictionHead(256, 1024, 256)
        self.encoder_momentum = copy.deepcopy(self.encoder)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.encoder_momentum)
        deactivate_requires_grad(self.projection_head_momentum)

    def online(self, x):
        return self.prediction_head(self.projection_head(self.encoder(x)))

    def target(self, x):
        return self.projection_head_momentum(self.encoder_momentum(x)).detach()

    def loss(self, criterion, x0, x1, step, steps):
        from lightly.models.utils import update_momentum
        from lightly.utils.scheduler import cosine_schedule

        momentum = cosine_schedule(step, steps, 0.996, 1)
        update_momentum(self.encoder, self.encoder_momentum, m=momentum)
        update_momentum(self.projection_head, self.projection_head_momentum, m=momentum)
        return 0.5 * (criterion(self.online(x0), self.target(x1))
                      + criterion(self.online(x1), self.target(x0)))


def optimizer_and_schedule(model, name, batch_size, steps):
    """lightly's CIFAR-10 benchmark optimizer (SGD, cosine) or keras_ssl's (AdamW, warm-up)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "sgd":
        optimizer = torch.optim.SGD(params, lr=0.06 * batch_size / 128, momentum=0.9,
                                    weight_decay=5e-4)
        return optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / steps))
    optimizer = torch.optim.AdamW(params, lr=2e-3, weight_decay=1e-4)
    warmup = max(1, int(0.05 * steps))
    return optimizer, lambda step: (step + 1) / warmup if step < warmup else 0.5 * (
        1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


@torch.no_grad()
def features(encoder, images, normalize, batch_size=512) -> np.ndarray:
    encoder.eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(images[i:i + batch_size]).permute(0, 3, 1, 2).float().div(255)
        out.append(encoder(normalize(x.expand(-1, 3, -1, -1))).numpy())
    encoder.train()
    return np.concatenate(out).astype(np.float32)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description="lightly's SimSiam or BYOL on keras_ssl's ConvNet for a fixed number of steps.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--method", required=True, choices=METHODS)
    parser.add_argument("--data", required=True, type=Path, help=f"an .npz with {ARRAYS}")
    parser.add_argument("--out", required=True, type=Path, help="the .npz of features to write")
    parser.add_argument("--steps", type=int, default=120, help="(120)")
    parser.add_argument("--every", type=int, default=40, help="features every K steps (40)")
    parser.add_argument("--batch-size", type=int, default=256, help="(256)")
    parser.add_argument("--width", type=int, default=32, help="the ConvNet's width (32)")
    parser.add_argument("--optimizer", default="sgd", choices=("sgd", "adamw"),
                        help="lightly's benchmark's SGD (default) or keras_ssl's AdamW")
    parser.add_argument("--seed", type=int, default=0, help="(0)")
    args = parser.parse_args(argv)
    if not args.data.is_file():
        parser.error(f"--data {args.data}: no such file")
    from lightly.loss import NegativeCosineSimilarity
    from lightly.transforms import SimCLRTransform
    from lightly.transforms.utils import IMAGENET_NORMALIZE
    from torchvision.transforms import Normalize

    torch.manual_seed(args.seed)
    with np.load(args.data) as data:
        x_train, x_memory, x_test = (data[k] for k in ARRAYS)
    size = x_train.shape[1]
    encoder, dim = encoders()["convnet"](size, width=args.width)
    model = (SimSiam if args.method == "simsiam" else BYOL)(encoder, dim)
    criterion = NegativeCosineSimilarity()
    optimizer, schedule = optimizer_and_schedule(model, args.optimizer, args.batch_size,
                                                 args.steps)
    transform = SimCLRTransform(input_size=size, cj_strength=0.5, gaussian_blur=0.0)
    loader = torch.utils.data.DataLoader(
        _Images(np.repeat(x_train, 3 // x_train.shape[-1], axis=-1), transform),
        batch_size=args.batch_size, shuffle=True, drop_last=True,
        num_workers=torch.get_num_threads(), persistent_workers=True)
    normalize = Normalize(IMAGENET_NORMALIZE["mean"], IMAGENET_NORMALIZE["std"])
    out = {"memory_0": features(encoder, x_memory, normalize),
           "test_0": features(encoder, x_test, normalize), "torch_version": torch.__version__}
    step = 0
    while step < args.steps:
        for x0, x1 in loader:
            for group in optimizer.param_groups:
                group["lr"] = group.setdefault("initial_lr", group["lr"]) * schedule(step)
            loss = model.loss(criterion, x0, x1, step, args.steps)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step % args.every == 0:
                out[f"memory_{step}"] = features(encoder, x_memory, normalize)
                out[f"test_{step}"] = features(encoder, x_test, normalize)
                print(f"step {step} loss {float(loss):.4f}", flush=True)
            if step == args.steps:
                break
    np.savez(args.out, **out)


if __name__ == "__main__":
    main()
