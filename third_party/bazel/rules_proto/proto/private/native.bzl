"""Bazel's built-in ProtoInfo under another name (a .bzl cannot rebind a builtin's name to itself)."""

NativeProtoInfo = ProtoInfo
