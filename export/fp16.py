"""The float16 export: a strongly typed graph by construction.

TensorRT 11 takes precision only from the ONNX types, and FP16 converters that rewrite
a float32 graph either need TensorRT to type our custom node or write invalid models
(see FACTS). So we export a model that *is* float16 in PyTorch: convolutions, the PDF
op and the elementwise work run in float16, while the float32 islands the model
already has (softmax over H*W and over the maps, GAP, the attention products, the
sampling offsets; see :mod:`saphnet.model.blocks`) appear as float32 nodes between
Casts.

The file's input and output stay float32 (NCHW RGB in [0, 1], like the FP32 file),
with one Cast at each end: every backend feeds the same arrays to either precision,
and the cost is two elementwise casts of the image.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class Float16Network(nn.Module):
    """A float16 copy of ``model`` behind float32 input and output."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = copy.deepcopy(model).half().eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(torch.float16)).to(torch.float32)
