// Registers the DTMM ops with TFLM's Python interpreter:
//   tflite_micro runtime.Interpreter.from_bytes(model,
//       custom_op_registerers=["DtmmRegisterer"])
// The interpreter looks the name up with dlsym(RTLD_DEFAULT, ...), so this
// library and the interpreter's extension must both be loaded RTLD_GLOBAL
// (python/dtmm/tflm.py does that). Build: dtmm_ops/python/build.sh.
#include "dtmm_ops.h"
#include "python/tflite_micro/python_ops_resolver.h"

extern "C" bool DtmmRegisterer(tflite::PythonOpsResolver* resolver) {
  return resolver != nullptr && dtmm::AddDtmmOps(*resolver) == kTfLiteOk;
}
