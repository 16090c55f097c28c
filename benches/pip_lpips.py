#!/usr/bin/env python3
"""Time pip `lpips==0.1.4` (LPIPS-VGG) on PyTorch CPU for `make bench`: one line of figures.

Runs in the bench venv (`make bench-venv`: torch and lpips from PyPI under .cache/bench). lpips
imports torchvision only to build VGG16's layer stack; torchvision wheels pin one exact torch
build, so this script supplies that stack itself (the same layers, torchvision's VGG16
`features`). The backbone weights are random (`pnet_rand=True`): the ImageNet weights would be
downloaded from outside the package registries, and the time of a convolution does not depend
on its weights. The linear layers are lpips' own v0.1 file.
"""

import argparse
import sys
import time
import types


def install_torchvision_stub(nn):
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]

    class VGG(nn.Module):
        def __init__(self):
            super().__init__()
            layers, c = [], 3
            for v in cfg:
                if v == "M":
                    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                else:
                    layers += [nn.Conv2d(c, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                    c = v
            self.features = nn.Sequential(*layers)

    def vgg16(pretrained=False, **_):
        if pretrained:
            raise RuntimeError("the bench uses random backbone weights (pnet_rand=True)")
        return VGG()

    tv = types.ModuleType("torchvision")
    tv.models = types.ModuleType("torchvision.models")
    tv.models.vgg16 = vgg16
    sys.modules["torchvision"] = tv
    sys.modules["torchvision.models"] = tv.models


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()

    import torch
    from torch import nn

    torch.set_num_threads(args.threads)
    install_torchvision_stub(nn)
    import lpips

    model = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False).eval()
    g = torch.Generator().manual_seed(0)
    a = torch.rand(1, 3, args.size, args.size, generator=g) * 2 - 1  # lpips takes [-1, 1]
    b = torch.rand(1, 3, args.size, args.size, generator=g) * 2 - 1
    with torch.inference_mode():
        model(a, b)  # warm-up
        t = time.perf_counter()
        for _ in range(args.reps):
            model(a, b)
        secs = (time.perf_counter() - t) / args.reps
    print(f"pip-lpips torch={torch.__version__} threads={torch.get_num_threads()} "
          f"size={args.size} ms_per_pair={secs * 1e3:.1f}")


if __name__ == "__main__":
    main()
