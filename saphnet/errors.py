"""User-facing errors: the CLI prints them as one line and exits non-zero."""


class SaphnetError(Exception):
    """An error caused by the user's input; its message names the problem and the fix."""


class WeightsError(SaphnetError):
    """A weights file is missing, not SAPHNet's, or made for another config."""


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, or its type's name when it has none: what a
    one-line error keeps of a library's multi-line message."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
