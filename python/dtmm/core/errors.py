"""The one exception hierarchy of dtmm.

Every error the CLI reports to a user is a ``DtmmError``; its message is the one line
printed on stderr (``dtmm: error: ...``, exit status 2). Subclasses say what kind of
input was wrong; the two that are also ``ValueError`` keep ``except ValueError``
callers of the pruning API working.
"""


class DtmmError(Exception):
    """Base class: a problem with the user's input, reported as one line."""


class FormatError(DtmmError):
    """Malformed DTMM data: FWCS arrays, custom options or an unknown version."""


class ModelError(DtmmError):
    """The .tflite file is not a valid model, or an operator in it is inconsistent."""


class UnsupportedError(DtmmError):
    """A valid model uses something DTMM does not handle (dtype, op option, layer)."""


class UnsupportedModelError(UnsupportedError, ValueError):
    """A Keras model the pruner cannot analyse (subclassed, shared weighted layer)."""


class ArgumentError(DtmmError, ValueError):
    """A library call got an argument outside its domain (ratio, rule, mask shape)."""
