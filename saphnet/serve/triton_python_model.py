"""Triton Python-backend model for SAPHNet (copied as ``saphnet/1/model.py`` by
``saphnet triton-repo --kind python``).

It runs inside a stock ``tritonserver`` whose Python has ``saphnet`` installed
(``pip install saphnet`` for ONNX files, ``saphnet[tensorrt]`` for engines) and
serves the same contract as ``saphnet serve``: ``image`` UINT8 [batch, H, W, 3] in,
``deblurred`` out, same-size requests batched, large images tiled. Unlike PyTriton,
the Python backend answers each request on its own, so one bad request in a batch
gets its error and the others their images.
"""

from __future__ import annotations

import json
from pathlib import Path

import triton_python_backend_utils as pb_utils

from saphnet.errors import SaphnetError, first_line
from saphnet.runtime.api import open_backend
from saphnet.serve import INPUT_NAME, OUTPUT_NAME
from saphnet.serve.server import DeblurModel, check_request


class TritonPythonModel:
    """Triton's Python-backend interface: ``initialize``, ``execute``, ``finalize``."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        folder = Path(args["model_repository"]) / args["model_version"]
        kind_device = "cuda" if args.get("model_instance_kind") == "GPU" else "cpu"
        model_file = params.get("model_file")
        backend = open_backend(
            params.get("backend", "auto"),
            folder / model_file if model_file else None,
            params.get("weights") or None,
            device=params.get("device") or kind_device,
            plugin_library=params.get("plugin_library") or None,
        )
        self.model = DeblurModel(
            backend, int(params["max_side"]), float(params["memory_budget_mb"])
        )

    def execute(self, requests: list) -> list:
        responses: list = [None] * len(requests)
        valid: list[int] = []
        images = []
        for i, request in enumerate(requests):
            image = pb_utils.get_input_tensor_by_name(request, INPUT_NAME).as_numpy()
            try:
                check_request(image, self.model.max_side)
            except SaphnetError as exc:  # the client's to fix: a 400, one line, no traceback
                error = pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
                responses[i] = pb_utils.InferenceResponse(error=error)
                continue
            valid.append(i)
            images.append({INPUT_NAME: image})
        if valid:
            try:
                results = self.model(images)
            except Exception as exc:  # a backend failure fails this batch, not the server
                error = pb_utils.TritonError(f"{type(exc).__name__}: {first_line(exc)}")
                for i in valid:
                    responses[i] = pb_utils.InferenceResponse(error=error)
                return responses
            for i, result in zip(valid, results, strict=True):
                tensor = pb_utils.Tensor(OUTPUT_NAME, result[OUTPUT_NAME])
                responses[i] = pb_utils.InferenceResponse(output_tensors=[tensor])
        return responses

    def finalize(self) -> None:
        self.model.backend.close()
