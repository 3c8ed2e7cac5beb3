"""The one exception type a user can cause."""

__all__ = ["HwgenError"]


class HwgenError(Exception):
    """A problem with the user's input: model, bit widths, folding, files.

    The message names the layer or node at fault and says what would be accepted. The CLI prints
    it without a traceback and exits with status 1.
    """
