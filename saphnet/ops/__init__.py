"""The PDF operator (modulated deformable convolution) and its backends."""

from .dispatch import available_backends, forced_backend, register_backend
from .pdf_conv import (
    PDFGeometry,
    output_size,
    pdf_conv,
    pdf_conv_gridsample,
    pdf_conv_reference,
)

__all__ = [
    "PDFGeometry",
    "available_backends",
    "forced_backend",
    "output_size",
    "pdf_conv",
    "pdf_conv_gridsample",
    "pdf_conv_reference",
    "register_backend",
]
