"""ffcv-inat: FFCV toolkit for "does the pretraining set matter for recognising animals?".

`ffcv_inat.train(...)` and `ffcv_inat.evaluate(...)` are the Python API (ffcv_inat/api.py),
imported on first use so that `import ffcv_inat` stays light for the command lines.
"""

__version__ = "0.1.0"


class UserError(Exception):
    """Bad input from the user: the CLI prints it as one line and exits nonzero, no traceback.

    `kind` says what failed, for a sweep deciding whether a retry can help
    (ffcv_inat.failures.KINDS); subclasses for other causes set their own."""

    kind = "input"


API = ("train", "evaluate")


def __getattr__(name: str):
    if name in API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
