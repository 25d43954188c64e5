"""DTMM: filterlet pruning and filterlet-sparse int8 convolution for TFLite Micro.

    import dtmm
    report = dtmm.convert_file("model_int8.tflite", "model_dtmm.tflite")
    print(report.table())
    dtmm.verify_files("model_int8.tflite", "model_dtmm.tflite")

See docs/contract.md for the DTMM_CONV_2D format; dtmm.core holds the contract,
the .tflite object model and everything else the rest is built on.
"""

from dtmm.core.errors import DtmmError, FormatError, ModelError, UnsupportedError

__version__ = "0.1.0"

__all__ = [
    "DtmmError",
    "FormatError",
    "ModelError",
    "UnsupportedError",
    "FORMAT_VERSION",
    "FWCS",
    "convert_file",
    "convert_model",
    "verify_files",
    "__version__",
]


def __getattr__(name):
    # Imported when asked for: the converter pulls in the flatbuffer schema, and
    # `python -m dtmm.core.contract` must not find its module already loaded.
    if name in ("FWCS", "FORMAT_VERSION"):
        from dtmm.core import fwcs

        return getattr(fwcs, name)
    if name in ("convert_file", "convert_model"):
        from dtmm import convert

        return getattr(convert, name)
    if name == "verify_files":
        from dtmm import verify

        return verify.verify_files
    raise AttributeError(f"module 'dtmm' has no attribute {name!r}")
