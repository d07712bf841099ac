"""Serving SAPHNet on Triton Inference Server.

``server`` runs the ``tritonserver`` PyTriton ships on a python-kind repository,
``triton_repo`` writes model repositories for a stock ``tritonserver``, and
``loadtest`` measures a running server. Nothing here imports torch unless the
PyTorch backend is asked for, so ``pip install saphnet[serve]`` is enough to serve
an ONNX file or an engine.
"""

MODEL_NAME = "saphnet"
"""The Triton model name every repository and ``saphnet serve`` use."""
INPUT_NAME = "image"
"""UINT8 RGB, HWC, any size: dims [-1, -1, 3] after the batch dimension."""
OUTPUT_NAME = "deblurred"
"""UINT8, the input's shape."""
DEFAULT_MAX_SIDE = 8192
"""Largest side served by default: an 8K frame; larger requests are refused."""
MEMORY_BUDGET_MB = 4096
"""Default peak memory of one model instance, by which batches are filled and large
images tiled: a server's GPU, not a small board's 1 GB that ``saphnet deblur``
assumes (1080p runs whole in it on ONNX Runtime's figures)."""


class Endpoints:
    """``host:port`` addresses of anything with ``host``, ``http_port`` and
    ``grpc_port`` (the server's options, a started server), as Triton clients take them."""

    host: str
    http_port: int
    grpc_port: int

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"
