"""``tf.train.Example`` as protobuf classes, built from its schema instead of TensorFlow.

The schema is TensorFlow's ``example.proto`` / ``feature.proto`` (package ``tensorflow``);
bytes written by ``tf.io.TFRecordWriter`` parse with these classes unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

__all__ = ["Example", "parse_example"]

_F = descriptor_pb2.FieldDescriptorProto


def _field(message: Any,
           name: str,
           number: int,
           kind: int,
           label: int = _F.LABEL_OPTIONAL,
           type_name: str = "",
           oneof: int | None = None) -> None:
    field = message.field.add(name=name, number=number, type=kind, label=label)
    if type_name:
        field.type_name = type_name
    if oneof is not None:
        field.oneof_index = oneof


def _build() -> Any:
    file = descriptor_pb2.FileDescriptorProto(name="trainyard/tf_example.proto",
                                              package="tensorflow",
                                              syntax="proto3")
    for name, kind in (("BytesList", _F.TYPE_BYTES), ("FloatList", _F.TYPE_FLOAT), ("Int64List",
                                                                                    _F.TYPE_INT64)):
        _field(file.message_type.add(name=name), "value", 1, kind, _F.LABEL_REPEATED)
    feature = file.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    for number, name in enumerate(("bytes_list", "float_list", "int64_list"), start=1):
        type_name = ".tensorflow." + "".join(p.title() for p in name.split("_"))
        _field(feature, name, number, _F.TYPE_MESSAGE, type_name=type_name, oneof=0)
    features = file.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    _field(entry, "key", 1, _F.TYPE_STRING)
    _field(entry, "value", 2, _F.TYPE_MESSAGE, type_name=".tensorflow.Feature")
    _field(features, "feature", 1, _F.TYPE_MESSAGE, _F.LABEL_REPEATED,
           ".tensorflow.Features.FeatureEntry")
    example = file.message_type.add(name="Example")
    _field(example, "features", 1, _F.TYPE_MESSAGE, type_name=".tensorflow.Features")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.Example"))


Example = _build()


def parse_example(data: bytes) -> dict[str, Any]:
    """Decode one serialized Example: float/int lists as arrays, byte lists as lists of bytes."""
    example = Example()
    example.ParseFromString(data)
    out: dict[str, Any] = {}
    for key, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        if kind == "float_list":
            out[key] = np.asarray(feature.float_list.value, dtype=np.float32)
        elif kind == "int64_list":
            out[key] = np.asarray(feature.int64_list.value, dtype=np.int64)
        elif kind == "bytes_list":
            out[key] = list(feature.bytes_list.value)
        else:
            out[key] = None
    return out
