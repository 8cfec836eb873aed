"""lightly's own SimCLR, end to end: the peer `train_step.py --suite references` compares with.

As lightly's CIFAR-10 benchmark and examples build it, with lightly's classes, not a copy of
them: `ResNetGenerator("resnet-18")` (its small-image stem) without its classifier, then
global average pooling, `SimCLRProjectionHead(512, 512, 128)`, `NTXentLoss()`, and
`SimCLRTransform(input_size=32, cj_strength=0.5, gaussian_blur=0.0)` (lightly's CIFAR-10
settings) on PIL images in a `torch.utils.data.DataLoader` with one worker per CPU core. The
images are the same seeded random uint8 images `train_step.py` gives keras_ssl. The step: two
views from the loader, backbone, head, loss, backward, Adam; each timed step includes waiting
for its batch, so img/s is what a user's training loop gets.

`train_step.py` runs this file with an interpreter that has torch and lightly (`--torch-python`;
no TensorFlow is imported here) and reads the one line it prints: `RESULT {json}`.

    python benchmarks/_lightly_reference.py --batch-size 256 --steps 3
    python benchmarks/_lightly_reference.py --batch-size 16 --examples 64 --steps 1 --warmup 0
"""

from __future__ import annotations

import argparse
import json
import os

from _torch_reference import matmul_peak, timed


class _Images:
    """uint8 [N, H, W, 3] images as a map-style dataset of PIL images through `transform`."""

    def __init__(self, images, transform):
        self.images, self.transform = images, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[index]))


def measure(batch_size: int, steps: int, warmup: int, image_size: int = 32,
            examples: int = 4096) -> dict:
    import numpy as np
    import torch
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead
    from lightly.models.resnet import ResNetGenerator
    from lightly.transforms import SimCLRTransform
    from torch import nn

    torch.manual_seed(0)
    resnet = ResNetGenerator("resnet-18")
    backbone = nn.Sequential(*list(resnet.children())[:-1], nn.AdaptiveAvgPool2d(1),
                             nn.Flatten())
    model = nn.Sequential(backbone, SimCLRProjectionHead(512, 512, 128))
    criterion = NTXentLoss()
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    images = np.random.default_rng(0).integers(0, 256, (examples, image_size, image_size, 3),
                                               dtype=np.uint8)
    transform = SimCLRTransform(input_size=image_size, cj_strength=0.5, gaussian_blur=0.0)
    workers = os.cpu_count() or 1
    loader = torch.utils.data.DataLoader(_Images(images, transform), batch_size=batch_size,
                                         shuffle=True, drop_last=True, num_workers=workers,
                                         persistent_workers=True)

    def batches():
        while True:
            yield from loader

    stream = batches()

    def step():
        view1, view2 = next(stream)
        loss = criterion(model(view1), model(view2))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    return {**timed(step, batch_size, steps, warmup),
            "parameters": sum(p.numel() for p in backbone.parameters()),
            "loader_workers": workers}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description="lightly's SimCLR (ResNet-18, DataLoader of SimCLRTransform views) timed end "
        "to end; prints `RESULT {json}`.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--batch-size", type=int, default=256, help="images per step (256)")
    parser.add_argument("--image-size", type=int, default=32, help="(32)")
    parser.add_argument("--examples", type=int, default=4096, help="images to draw from (4096)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps; the median is kept (3)")
    parser.add_argument("--warmup", type=int, default=1,
                        help="untimed steps after the one that counts FLOPs (1)")
    args = parser.parse_args(argv)
    import lightly
    import torch

    row = measure(args.batch_size, args.steps, args.warmup, args.image_size, args.examples)
    row["torch_matmul_peak"] = matmul_peak()
    row["threads"] = torch.get_num_threads()
    row["torch"] = torch.__version__
    row["lightly"] = lightly.__version__
    print("RESULT " + json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
