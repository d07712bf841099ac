"""The SAPHNet network, its config and its weights files."""

from .config import SAPHNetConfig
from .network import SAPHNet, pad_to_multiple
from .weights import read_config

__all__ = ["SAPHNet", "SAPHNetConfig", "pad_to_multiple", "read_config"]
