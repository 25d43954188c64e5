"""Exceptions shared by the converter, the FWCS codec and the CLI.

Every error the CLI reports to a user is a `DtmmError`; its message is the one line
printed on stderr.
"""


class DtmmError(Exception):
    """Base class: a problem with the user's input, reported as one line."""


class FormatError(DtmmError):
    """Malformed DTMM data: FWCS arrays, custom options or an unknown version."""


class ModelError(DtmmError):
    """The .tflite file is not a valid model, or a CONV_2D in it is inconsistent."""


class UnsupportedError(DtmmError):
    """A valid model uses something DTMM does not handle (dtype, op option)."""
