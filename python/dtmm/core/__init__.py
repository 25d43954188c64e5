"""The bottom layer of dtmm: everything that defines a DTMM model, without TensorFlow.

Modules (each the one place for its subject):

* ``errors``    the exception hierarchy (every user-facing error is a ``DtmmError``)
* ``contract``  the DTMM custom op contract: custom code, version, option table with
                ranges, encode / decode / validate, the generated C header
* ``tflite``    the object model of a .tflite (the only reader and writer)
* ``quant``     TFLite's integer arithmetic: QuantizeMultiplier, activation ranges,
                MultiplyByQuantizedMultiplier, requantization with int32 wrap
* ``geometry``  TFLite's conv output size and padding
* ``ops``       CONV_2D and DTMM_CONV_2D operators read and checked
* ``size``      the file-size model (bytes of each form of a conv in the flatbuffer)
* ``rounding``  how many of n items a pruning ratio removes
* ``latency``   per-target latency coefficients and bench layer shapes (package data)

Nothing here imports TensorFlow or Keras; tests/python/test_core_layering.py checks it.
"""
