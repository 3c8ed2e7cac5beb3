"""The exception type a user can cause, and the warning for input that works but is suspect."""

__all__ = ["HwgenError", "HwgenWarning", "DoesNotFit"]


class HwgenError(Exception):
    """A problem with the user's input: model, bit widths, folding, files.

    The message names the layer or node at fault and says what would be accepted. The CLI prints
    it without a traceback and exits with status 1.
    """


class DoesNotFit(HwgenError):
    """No plan of the model fits the board's resources (the message says which run out)."""


class HwgenWarning(UserWarning):
    """Input hwgen accepts but that probably is not what the user meant (calibration data whose
    every value is the same, say). The CLI prints it as one ``hwgen: warning: …`` line."""
