from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PodOffender(_message.Message):
    __slots__ = ("namespace", "name", "metric", "value")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    metric: str
    value: float
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., metric: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...

class NodeTelemetry(_message.Message):
    __slots__ = ("schema_version", "node_name", "collected_at_unix_ms", "values", "available", "missing_reasons", "agent_version", "top_offenders")
    class MissingReasonsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    COLLECTED_AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    MISSING_REASONS_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    TOP_OFFENDERS_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    node_name: str
    collected_at_unix_ms: int
    values: _containers.RepeatedScalarFieldContainer[float]
    available: _containers.RepeatedScalarFieldContainer[bool]
    missing_reasons: _containers.ScalarMap[str, str]
    agent_version: str
    top_offenders: _containers.RepeatedCompositeFieldContainer[PodOffender]
    def __init__(self, schema_version: _Optional[int] = ..., node_name: _Optional[str] = ..., collected_at_unix_ms: _Optional[int] = ..., values: _Optional[_Iterable[float]] = ..., available: _Optional[_Iterable[bool]] = ..., missing_reasons: _Optional[_Mapping[str, str]] = ..., agent_version: _Optional[str] = ..., top_offenders: _Optional[_Iterable[_Union[PodOffender, _Mapping]]] = ...) -> None: ...

class PushAck(_message.Message):
    __slots__ = ("received_at_unix_ms", "clock_offset_ms")
    RECEIVED_AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    CLOCK_OFFSET_MS_FIELD_NUMBER: _ClassVar[int]
    received_at_unix_ms: int
    clock_offset_ms: int
    def __init__(self, received_at_unix_ms: _Optional[int] = ..., clock_offset_ms: _Optional[int] = ...) -> None: ...
