"""SAPHNet: the three-level 1-2-4 patch hierarchy of encoders and decoders.

The flow is DMPHN's, bottom up, with its feature sums replaced by attention:
level 3 encodes four patches, joins left/right features across the patch border and
decodes two half-height maps; level 2 encodes the top/bottom halves of
(input + level-3 residual) attending to the level-3 features, joins them and decodes;
level 1 encodes (input + level-2 residual) attending to the level-2 features, and its
decoder's residual is added to the input. Patches of a level run as one batch.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from .blocks import ContentAwareResBlock, PlainResBlock, conv3x3
from .config import SAPHNetConfig
from .weights import check_shapes, load_state, save_weights


def _ca_blocks(config: SAPHNetConfig, count: int) -> nn.ModuleList:
    return nn.ModuleList(
        ContentAwareResBlock(
            config.widths[2],
            config.attention_maps,
            config.pdf_kernel,
            config.offset_max,
            config.use_offsets,
            config.gate_reduction,
        )
        for _ in range(count)
    )


def _plain(channels: int, count: int) -> nn.Sequential:
    return nn.Sequential(*(PlainResBlock(channels) for _ in range(count)))


class Encoder(nn.Module):
    """Image -> 1/4-resolution features; the content-aware resblocks attend to
    ``context`` (the lower level's features) when it is given."""

    def __init__(self, config: SAPHNetConfig) -> None:
        super().__init__()
        w0, w1, w2 = config.widths
        self.stem = nn.Sequential(
            conv3x3(config.in_channels, w0), _plain(w0, config.plain_resblocks)
        )
        self.down1 = nn.Sequential(conv3x3(w0, w1, stride=2), _plain(w1, config.plain_resblocks))
        self.down2 = conv3x3(w1, w2, stride=2)
        self.blocks = _ca_blocks(config, config.encoder_resblocks)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        f = self.down2(self.down1(self.stem(x)))
        for block in self.blocks:
            f = block(f, context)
        return f


class Decoder(nn.Module):
    """Features -> residual image; the content-aware resblocks attend to the encoder's
    features (cross encoder-decoder attention)."""

    def __init__(self, config: SAPHNetConfig) -> None:
        super().__init__()
        w0, w1, w2 = config.widths
        self.blocks = _ca_blocks(config, config.decoder_resblocks)
        self.up2 = nn.Sequential(
            nn.ConvTranspose2d(w2, w1, 3, stride=2, padding=1, output_padding=1),
            _plain(w1, config.plain_resblocks),
        )
        self.up1 = nn.Sequential(
            nn.ConvTranspose2d(w1, w0, 3, stride=2, padding=1, output_padding=1),
            _plain(w0, config.plain_resblocks),
        )
        self.head = conv3x3(w0, config.in_channels)

    def forward(self, f: torch.Tensor, encoded: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            f = block(f, encoded)
        return self.head(self.up1(self.up2(f)))


class Level(nn.Module):
    """One level of the hierarchy: an encoder and a decoder."""

    def __init__(self, config: SAPHNetConfig) -> None:
        super().__init__()
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)


def _split_rows(t: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (2N, C, H/2, W): top halves, then bottom halves."""
    h = t.shape[2] // 2
    return torch.cat([t[:, :, :h], t[:, :, h:]], dim=0)


def _join_rows(t: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_split_rows`."""
    n = t.shape[0] // 2  # not chunk(): its split size would pin a dynamic batch in export
    return torch.cat([t[:n], t[n:]], dim=2)


def _split_cols(t: torch.Tensor) -> torch.Tensor:
    w = t.shape[3] // 2
    return torch.cat([t[..., :w], t[..., w:]], dim=0)


def _join_cols(t: torch.Tensor) -> torch.Tensor:
    n = t.shape[0] // 2
    return torch.cat([t[:n], t[n:]], dim=3)


class SAPHNet(nn.Module):
    """Spatially-Attentive Patch-Hierarchical Network (Suin et al., CVPR 2020).

    Input and output are RGB in [0, 1], (N, 3, H, W), any H and W: sides are
    reflect-padded to a multiple of 16 and the output is cropped back. In eval mode
    the output is clamped to [0, 1].
    """

    def __init__(self, config: SAPHNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or SAPHNetConfig()
        self.levels = nn.ModuleList(Level(self.config) for _ in range(self.config.levels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(
                f"SAPHNet: expected (N, {self.config.in_channels}, H, W), got {tuple(x.shape)}"
            )
        h, w = x.shape[2], x.shape[3]
        xp = pad_to_multiple(x, self.config.pad_multiple)
        residual: torch.Tensor | None = None
        context: torch.Tensor | None = None
        # self.levels[0] is level 1 (whole image); the deepest level runs first.
        for depth in range(self.config.levels, 0, -1):
            level = self.levels[depth - 1]
            inp = xp if residual is None else xp + residual
            residual, context = self._run_level(level, depth, inp, context)
        assert residual is not None
        out = crop_to(xp + residual, h, w)
        return out if self.training else out.clamp(0.0, 1.0)

    def save(self, path: str | os.PathLike[str], force: bool = False) -> None:
        """Write the weights as safetensors with the config in the metadata."""
        save_weights(self, self.config, path, force=force)

    @classmethod
    def load(cls, path: str | os.PathLike[str], config: SAPHNetConfig | None = None) -> SAPHNet:
        """Build the network a weights file was saved from (on CPU, in eval mode).

        With ``config`` given, a file made for another config fails in one line.
        """
        config, state = load_state(path, config)
        model = cls(config)
        check_shapes(path, model.state_dict(), state)
        model.load_state_dict(state)
        return model.eval()

    @staticmethod
    def _run_level(
        level: Level, depth: int, inp: torch.Tensor, lower: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run one level; return its residual image and its features joined across
        patch borders (the next level's cross-level context)."""
        if depth == 1:
            f = level.encoder(inp, lower)
            return level.decoder(f, f), f
        if depth == 2:
            f = _join_rows(
                level.encoder(_split_rows(inp), _split_rows(lower) if lower is not None else None)
            )
            return level.decoder(f, f), f
        # depth 3: four patches (rows split first, then columns), left/right joined.
        patches = _split_cols(_split_rows(inp))
        f = _join_cols(level.encoder(patches))  # (2N, C, h/2, w): top then bottom halves
        residual = _join_rows(level.decoder(f, f))
        return residual, _join_rows(f)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad H and W at the bottom/right to a multiple of ``multiple`` by reflection; a
    side shorter than its pad repeats its first row/column beyond the reflection.

    Written as index arithmetic rather than ``F.pad`` behind a branch on the size, so
    that ``torch.export`` sees each padded side as ``multiple * ceil(side / multiple)``
    with no guard on the image size: the ONNX export keeps H and W dynamic.
    """
    for dim in (2, 3):
        size = x.shape[dim]
        padded = multiple * ((size + multiple - 1) // multiple)
        last = size - 1
        index = (last - (last - torch.arange(padded, device=x.device)).abs()).clamp(min=0)
        x = x.index_select(dim, index)
    return x


def crop_to(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``x[:, :, :height, :width]`` as index selection, which (unlike slicing)
    ``torch.export`` takes without a guard that the size fits; see :func:`pad_to_multiple`."""
    x = x.index_select(2, torch.arange(height, device=x.device))
    return x.index_select(3, torch.arange(width, device=x.device))
