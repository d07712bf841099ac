"""ONNX export of SAPHNet with the saphnet::PDFConv custom op (installed as saphnet.export)."""
