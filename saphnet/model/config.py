"""Every size of the network in one dataclass, stored with the weights."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class SAPHNetConfig:
    """Sizes of SAPHNet. The defaults are the paper's network.

    Attributes:
        levels: patch-hierarchy levels, 1 to 3 (1, 2 and 4 patches; the paper uses 3).
        in_channels: image channels (RGB).
        widths: encoder channels at full, 1/2 and 1/4 resolution.
        plain_resblocks: DMPHN resblocks at the two finer scales of encoder and decoder.
        encoder_resblocks: content-aware resblocks at 1/4 resolution in each encoder.
        decoder_resblocks: content-aware resblocks (with cross encoder-decoder attention)
            at 1/4 resolution in each decoder.
        attention_maps: C2, the number of global descriptors of the linear self-attention.
        pdf_kernel: K of the K x K pixel-dependent filter.
        offset_max: bound of the PDF offsets in feature pixels (offset = bound * tanh).
        use_offsets: False gives the paper's variant (a), PDF without offsets; True
            gives variant (b), the full model.
        gate_reduction: channel reduction of the M2 channel gate's hidden layer.
    """

    levels: int = 3
    in_channels: int = 3
    widths: tuple[int, int, int] = (32, 64, 128)
    plain_resblocks: int = 2
    encoder_resblocks: int = 3
    decoder_resblocks: int = 3
    attention_maps: int = 16
    pdf_kernel: int = 5
    offset_max: float = 8.0
    use_offsets: bool = True
    gate_reduction: int = 4

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        problems = []
        if self.levels not in (1, 2, 3):
            problems.append(f"levels must be 1, 2 or 3, got {self.levels}")
        if len(self.widths) != 3 or min(self.widths) < 1:
            problems.append(f"widths must be three positive ints, got {self.widths}")
        if self.pdf_kernel < 1 or self.pdf_kernel % 2 == 0:
            problems.append(f"pdf_kernel must be odd and positive, got {self.pdf_kernel}")
        if self.attention_maps < 1:
            problems.append(f"attention_maps must be >= 1, got {self.attention_maps}")
        if min(self.plain_resblocks, self.encoder_resblocks, self.decoder_resblocks) < 0:
            problems.append("resblock counts must be >= 0")
        if self.offset_max <= 0:
            problems.append(f"offset_max must be > 0, got {self.offset_max}")
        if self.gate_reduction < 1:
            problems.append(f"gate_reduction must be >= 1, got {self.gate_reduction}")
        if problems:
            raise ValueError("SAPHNetConfig: " + "; ".join(problems))

    @property
    def pad_multiple(self) -> int:
        """Input sides are padded to this: two stride-2 convs times the 2x2 patch split."""
        return 16

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SAPHNetConfig:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"SAPHNetConfig: unknown fields {unknown}")
        return cls(**data)
