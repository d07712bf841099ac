"""User-facing errors: the CLI prints them as one line and exits non-zero."""


class SaphnetError(Exception):
    """An error caused by the user's input; its message names the problem and the fix."""


class WeightsError(SaphnetError):
    """A weights file is missing, not SAPHNet's, or made for another config."""
