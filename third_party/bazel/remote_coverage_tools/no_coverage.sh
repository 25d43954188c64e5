#!/bin/bash
echo "ERROR: bazel coverage is not available offline (remote_coverage_tools is a local stand-in, see third_party/bazel/README.md)" >&2
exit 1
