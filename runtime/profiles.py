"""TensorRT optimization profiles written the way trtexec writes shapes.

trtexec spells a shape ``input:1x3x256x256``; ``saphnet build --shapes`` takes
``[NAME:]MIN:OPT:MAX`` with each shape ``NxCxHxW`` (or ``HxW`` for one RGB image),
so a user can copy shapes between the two tools. Pure Python: no TensorRT needed,
which lets the CLI reject a bad profile before anything heavy loads.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import SaphnetError
from ..sizes import PAD_MULTIPLE  # the network pads sides to it: profiles must match

Shape = tuple[int, int, int, int]


@dataclass(frozen=True)
class Profile:
    """min/opt/max (N, C, H, W) of the one image input."""

    name: str
    min: Shape
    opt: Shape
    max: Shape

    def contains(self, shape: Shape) -> bool:
        """True when ``shape`` lies inside min..max in every dimension."""
        return all(lo <= s <= hi for lo, s, hi in zip(self.min, shape, self.max, strict=True))

    def trtexec(self) -> dict[str, str]:
        """``{"min": "input:1x3x64x64", ...}``: the trtexec ``--minShapes`` etc. values."""
        return {k: f"{self.name}:{format_shape(getattr(self, k))}" for k in ("min", "opt", "max")}

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "min": list(self.min),
            "opt": list(self.opt),
            "max": list(self.max),
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Profile:
        return cls(
            str(data["name"]),
            *(tuple(int(v) for v in data[k]) for k in ("min", "opt", "max")),  # type: ignore[attr-defined]
        )


DEFAULT_SHAPES = "1x3x64x64:1x3x720x1280:1x3x1088x1920"
"""Default profile: small crops up to 1080p frames (padded to 1088); larger images tile."""


def format_shape(shape: Shape) -> str:
    return "x".join(str(v) for v in shape)


def parse_shape(text: str) -> Shape:
    """``NxCxHxW`` or ``HxW`` (one RGB image) -> (N, C, H, W)."""
    try:
        dims = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SaphnetError(f"shape {text!r} is not NxCxHxW, e.g. 1x3x720x1280") from None
    if len(dims) == 2:
        dims = (1, 3, *dims)
    if len(dims) != 4 or min(dims) < 1:
        raise SaphnetError(f"shape {text!r} is not NxCxHxW with positive sizes, e.g. 1x3x720x1280")
    return dims  # type: ignore[return-value]


def parse_profile(text: str, default_name: str = "input") -> Profile:
    """``[NAME:]MIN:OPT:MAX`` -> Profile, checked: C = 3, min <= opt <= max,
    H and W multiples of 16."""
    parts = text.split(":")
    if len(parts) == 4:
        name, parts = parts[0], parts[1:]
    elif len(parts) == 3:
        name = default_name
    else:
        raise SaphnetError(
            f"shapes {text!r} are not [NAME:]MIN:OPT:MAX, e.g. 1x3x64x64:1x3x720x1280:1x3x1088x1920"
        )
    lo, opt, hi = (parse_shape(p) for p in parts)
    profile = Profile(name, lo, opt, hi)
    check_profile(profile)
    return profile


def check_profile(profile: Profile) -> None:
    """One-line SaphnetError for a profile TensorRT would reject or the network cannot run."""
    shapes = {"min": profile.min, "opt": profile.opt, "max": profile.max}
    for key, shape in shapes.items():
        if shape[1] != 3:
            raise SaphnetError(
                f"{key} shape {format_shape(shape)} has {shape[1]} channels; SAPHNet takes 3 (RGB)"
            )
        if shape[2] % PAD_MULTIPLE or shape[3] % PAD_MULTIPLE:
            raise SaphnetError(
                f"{key} shape {format_shape(shape)}: H and W must be multiples of {PAD_MULTIPLE} "
                "(the runtime pads images to that)"
            )
    if not (
        profile.contains(profile.opt)
        and all(a <= b for a, b in zip(profile.min, profile.max, strict=True))
    ):
        raise SaphnetError(
            f"shapes must satisfy min <= opt <= max in every dimension, got "
            f"{format_shape(profile.min)}:{format_shape(profile.opt)}:{format_shape(profile.max)}"
        )
