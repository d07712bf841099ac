"""saphnet: SAPHNet motion deblurring from PyTorch to ONNX to TensorRT."""

__version__ = "0.1.0"
