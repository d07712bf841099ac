"""The SAPHNet network, its config and its weights files.

The network and its weights need torch and are imported on first use, so that
:class:`SAPHNetConfig` (which the CLI's parsers and the deployment runtime read) stays
importable on hosts without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config import SAPHNetConfig

if TYPE_CHECKING:
    from .network import SAPHNet, pad_to_multiple
    from .weights import read_config

__all__ = ["SAPHNet", "SAPHNetConfig", "pad_to_multiple", "read_config"]

_LAZY = {"SAPHNet": "network", "pad_to_multiple": "network", "read_config": "weights"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
