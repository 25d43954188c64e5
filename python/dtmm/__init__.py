"""DTMM: filterlet pruning and filterlet-sparse int8 convolution for TFLite Micro.

    import dtmm
    report = dtmm.convert_file("model_int8.tflite", "model_dtmm.tflite")
    print(report.table())
    dtmm.verify_files("model_int8.tflite", "model_dtmm.tflite")

See docs/contract.md for the DTMM_CONV_2D format.
"""

from dtmm.errors import DtmmError, FormatError, ModelError, UnsupportedError
from dtmm.fwcs import FORMAT_VERSION, FWCS

__version__ = "0.1.0"

__all__ = [
    "DtmmError",
    "FormatError",
    "ModelError",
    "UnsupportedError",
    "FORMAT_VERSION",
    "FWCS",
    "__version__",
]


def __getattr__(name):
    # The converter pulls in the flatbuffer schema; import it only when asked for.
    if name in ("convert_file", "convert_model", "verify_files"):
        from dtmm import convert, verify

        return {"convert_file": convert.convert_file,
                "convert_model": convert.convert_model,
                "verify_files": verify.verify_files}[name]
    raise AttributeError(f"module 'dtmm' has no attribute {name!r}")
