"""Offline rules_proto: the native proto rules of Bazel 4, under rules_proto's names."""

load("//proto/private:native.bzl", "NativeProtoInfo")

proto_lang_toolchain = native.proto_lang_toolchain
proto_library = native.proto_library
ProtoInfo = NativeProtoInfo
