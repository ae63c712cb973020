"""``tf.train.Example`` and ``SequenceExample`` as protobuf message classes, without TensorFlow.

The messages of TensorFlow's ``example.proto`` and ``feature.proto`` are declared here as a
``FileDescriptorProto`` in a private descriptor pool (so an installed TensorFlow's own
``tensorflow.Example`` never clashes), and the installed ``protobuf`` runtime (upb, in C) builds
the classes. They parse records and write test files with the same wire format as TensorFlow.

Example:
    >>> Example = example_classes().Example
    >>> ex = Example()
    >>> ex.features.feature["a"].int64_list.value.extend([1, 2])
    >>> parse_example(ex.SerializeToString())["a"].tolist()
    [1, 2]
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import numpy as np

_PACKAGE = "embscale.tfexample"


class ExampleClasses(NamedTuple):
    """The protobuf message classes of ``tf.train`` (names as in TensorFlow)."""

    Example: Any
    SequenceExample: Any
    Feature: Any


@functools.lru_cache(maxsize=1)
def example_classes() -> ExampleClasses:
    """Build (once) the message classes of ``tf.train.Example`` and ``SequenceExample``.

    Raises:
        ImportError: when the ``protobuf`` package is missing (``pip install protobuf``).
    """
    try:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    except ImportError as e:  # pragma: no cover - protobuf is a declared dependency
        raise ImportError("reading tf.train.Example records needs protobuf: "
                          "pip install 'protobuf>=4.21'") from e
    T = descriptor_pb2.FieldDescriptorProto
    rep, opt = T.LABEL_REPEATED, T.LABEL_OPTIONAL
    f = descriptor_pb2.FileDescriptorProto(name="embscale_tf_example.proto", package=_PACKAGE,
                                           syntax="proto3")

    def message(name: str, fields: list[tuple], nested: tuple = ()) -> None:
        m = f.message_type.add(name=name)
        for number, fname, ftype, label, type_name in fields:
            fd = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                fd.type_name = f".{_PACKAGE}.{type_name}"
        for n in nested:
            m.nested_type.add().CopyFrom(n)

    def map_entry(name: str, value_type: str) -> Any:
        e = descriptor_pb2.DescriptorProto(name=name)
        e.field.add(name="key", number=1, type=T.TYPE_STRING, label=opt)
        e.field.add(name="value", number=2, type=T.TYPE_MESSAGE, label=opt,
                    type_name=f".{_PACKAGE}.{value_type}")
        e.options.map_entry = True
        return e

    # proto3: repeated scalars are packed, as TensorFlow declares FloatList and Int64List.
    message("BytesList", [(1, "value", T.TYPE_BYTES, rep, None)])
    message("FloatList", [(1, "value", T.TYPE_FLOAT, rep, None)])
    message("Int64List", [(1, "value", T.TYPE_INT64, rep, None)])
    message("Feature", [(1, "bytes_list", T.TYPE_MESSAGE, opt, "BytesList"),
                        (2, "float_list", T.TYPE_MESSAGE, opt, "FloatList"),
                        (3, "int64_list", T.TYPE_MESSAGE, opt, "Int64List")])
    f.message_type[-1].oneof_decl.add(name="kind")
    for fd in f.message_type[-1].field:
        fd.oneof_index = 0
    message("Features", [(1, "feature", T.TYPE_MESSAGE, rep, "Features.FeatureEntry")],
            (map_entry("FeatureEntry", "Feature"),))
    message("FeatureList", [(1, "feature", T.TYPE_MESSAGE, rep, "Feature")])
    message("FeatureLists", [(1, "feature_list", T.TYPE_MESSAGE, rep,
                              "FeatureLists.FeatureListEntry")],
            (map_entry("FeatureListEntry", "FeatureList"),))
    message("Example", [(1, "features", T.TYPE_MESSAGE, opt, "Features")])
    message("SequenceExample", [(1, "context", T.TYPE_MESSAGE, opt, "Features"),
                                (2, "feature_lists", T.TYPE_MESSAGE, opt, "FeatureLists")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)

    def get(name: str) -> Any:
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))

    return ExampleClasses(get("Example"), get("SequenceExample"), get("Feature"))


def feature_values(feature: Any) -> list[bytes] | np.ndarray:
    """A ``Feature`` message as a list of bytes, a float32 array or an int64 array."""
    kind = feature.WhichOneof("kind")
    if kind == "bytes_list":
        return list(feature.bytes_list.value)
    if kind == "float_list":
        return np.asarray(feature.float_list.value, dtype=np.float32)
    if kind == "int64_list":
        return np.asarray(feature.int64_list.value, dtype=np.int64)
    return np.zeros(0, np.float32)  # an empty Feature


def _message(cls: Any, data: bytes, what: str) -> Any:
    from google.protobuf.message import DecodeError

    try:
        return cls.FromString(data)
    except DecodeError as e:
        raise ValueError(f"record is not a valid {what} ({e}); is the file an RLDS TFRecord?") \
            from e


def parse_example(data: bytes) -> dict[str, Any]:
    """Decode a serialized ``tf.train.Example`` into ``{name: values}``."""
    ex = _message(example_classes().Example, data, "tf.train.Example")
    return {k: feature_values(v) for k, v in ex.features.feature.items()}


def parse_sequence_example(data: bytes) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """Decode a serialized ``tf.train.SequenceExample`` into (context, per-step feature lists)."""
    seq = _message(example_classes().SequenceExample, data, "tf.train.SequenceExample")
    context = {k: feature_values(v) for k, v in seq.context.feature.items()}
    lists = {k: [feature_values(f) for f in fl.feature]
             for k, fl in seq.feature_lists.feature_list.items()}
    return context, lists


def _set(feature: Any, values: Any) -> None:
    if isinstance(values, (bytes, str)):
        values = [values]
    if isinstance(values, list) and values and isinstance(values[0], (bytes, str)):
        feature.bytes_list.value.extend(v.encode() if isinstance(v, str) else v for v in values)
        return
    arr = np.asarray(values).reshape(-1)
    if arr.dtype.kind == "f":
        feature.float_list.value.extend(arr.astype(np.float32).tolist())
    else:
        feature.int64_list.value.extend(arr.astype(np.int64).tolist())


def encode_example(features: dict[str, Any]) -> bytes:
    """Serialize ``{name: values}`` (bytes/str lists, float or int arrays) as an ``Example``."""
    ex = example_classes().Example()
    for key, values in features.items():
        _set(ex.features.feature[key], values)
    return ex.SerializeToString()


def encode_sequence_example(context: dict[str, Any], feature_lists: dict[str, list[Any]]) -> bytes:
    """Serialize a ``SequenceExample`` from context features and per-step value lists."""
    seq = example_classes().SequenceExample()
    for key, values in context.items():
        _set(seq.context.feature[key], values)
    for key, steps in feature_lists.items():
        fl = seq.feature_lists.feature_list[key]
        for values in steps:
            _set(fl.feature.add(), values)
    return seq.SerializeToString()
