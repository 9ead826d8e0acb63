"""ffcv-inat: FFCV toolkit for "does the pretraining set matter for recognising animals?"."""

__version__ = "0.1.0"


class UserError(Exception):
    """Bad input from the user: the CLI prints it as one line and exits nonzero, no traceback.

    `kind` says what failed, for a sweep deciding whether a retry can help
    (ffcv_inat.failures.KINDS); subclasses for other causes set their own."""

    kind = "input"
