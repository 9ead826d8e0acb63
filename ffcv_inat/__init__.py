"""ffcv-inat: FFCV toolkit for "does the pretraining set matter for recognising animals?"."""

__version__ = "0.1.0"


class UserError(Exception):
    """Bad input from the user: the CLI prints it as one line and exits nonzero, no traceback."""
