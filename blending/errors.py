"""The one error type the package raises for input it cannot use."""

from __future__ import annotations

__all__ = ["InputError"]


class InputError(ValueError):
    """A setting, file or path that blending cannot use; the message is one line naming it.

    The command line turns exactly these into one line and exit status 2. Anything else raised
    inside diffusers, transformers or torch keeps its traceback: it is a bug report, not a bad
    argument.
    """
