"""Named network configs for training."""

from __future__ import annotations

from ..model import SAPHNetConfig

# The network of the shipped checkpoint: small enough to train meaningfully on a
# 2-core CPU in about 90 minutes (about 1.1 M parameters).
SMALL_CONFIG = SAPHNetConfig(
    widths=(16, 32, 64),
    plain_resblocks=1,
    encoder_resblocks=1,
    decoder_resblocks=1,
    attention_maps=8,
    pdf_kernel=3,
)
PRESETS = {"paper": SAPHNetConfig(), "small": SMALL_CONFIG}
