"""Inference backends, engine build, tiling and comparison (installed as saphnet.runtime).

``open_backend`` opens PyTorch, ONNX Runtime or TensorRT behind one interface and
``deblur`` runs any image through it (padding and tiling included). Importing this
package imports neither torch nor TensorRT.
"""

from .api import deblur, open_backend

__all__ = ["deblur", "open_backend"]
