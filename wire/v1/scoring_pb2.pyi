from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class QoSClass(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QOS_CLASS_UNSPECIFIED: _ClassVar[QoSClass]
    QOS_CLASS_GUARANTEED: _ClassVar[QoSClass]
    QOS_CLASS_BURSTABLE: _ClassVar[QoSClass]
    QOS_CLASS_BEST_EFFORT: _ClassVar[QoSClass]

class WorkloadProfile(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKLOAD_PROFILE_UNSPECIFIED: _ClassVar[WorkloadProfile]
    WORKLOAD_PROFILE_LATENCY_CRITICAL: _ClassVar[WorkloadProfile]
    WORKLOAD_PROFILE_CACHE_SENSITIVE: _ClassVar[WorkloadProfile]
    WORKLOAD_PROFILE_MEMORY_BANDWIDTH_BOUND: _ClassVar[WorkloadProfile]
    WORKLOAD_PROFILE_IO_BOUND: _ClassVar[WorkloadProfile]
    WORKLOAD_PROFILE_BATCH: _ClassVar[WorkloadProfile]

class ScoreStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCORE_STATUS_UNSPECIFIED: _ClassVar[ScoreStatus]
    SCORE_STATUS_SCORED: _ClassVar[ScoreStatus]
    SCORE_STATUS_STALE: _ClassVar[ScoreStatus]
    SCORE_STATUS_UNKNOWN_NODE: _ClassVar[ScoreStatus]
    SCORE_STATUS_FALLBACK: _ClassVar[ScoreStatus]
QOS_CLASS_UNSPECIFIED: QoSClass
QOS_CLASS_GUARANTEED: QoSClass
QOS_CLASS_BURSTABLE: QoSClass
QOS_CLASS_BEST_EFFORT: QoSClass
WORKLOAD_PROFILE_UNSPECIFIED: WorkloadProfile
WORKLOAD_PROFILE_LATENCY_CRITICAL: WorkloadProfile
WORKLOAD_PROFILE_CACHE_SENSITIVE: WorkloadProfile
WORKLOAD_PROFILE_MEMORY_BANDWIDTH_BOUND: WorkloadProfile
WORKLOAD_PROFILE_IO_BOUND: WorkloadProfile
WORKLOAD_PROFILE_BATCH: WorkloadProfile
SCORE_STATUS_UNSPECIFIED: ScoreStatus
SCORE_STATUS_SCORED: ScoreStatus
SCORE_STATUS_STALE: ScoreStatus
SCORE_STATUS_UNKNOWN_NODE: ScoreStatus
SCORE_STATUS_FALLBACK: ScoreStatus

class PodContext(_message.Message):
    __slots__ = ("namespace", "name", "cpu_request_cores", "memory_request_bytes", "qos_class", "profile", "priority")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CPU_REQUEST_CORES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_REQUEST_BYTES_FIELD_NUMBER: _ClassVar[int]
    QOS_CLASS_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    cpu_request_cores: float
    memory_request_bytes: int
    qos_class: QoSClass
    profile: WorkloadProfile
    priority: int
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., cpu_request_cores: _Optional[float] = ..., memory_request_bytes: _Optional[int] = ..., qos_class: _Optional[_Union[QoSClass, str]] = ..., profile: _Optional[_Union[WorkloadProfile, str]] = ..., priority: _Optional[int] = ...) -> None: ...

class BatchScoreRequest(_message.Message):
    __slots__ = ("pod", "node_names")
    POD_FIELD_NUMBER: _ClassVar[int]
    NODE_NAMES_FIELD_NUMBER: _ClassVar[int]
    pod: PodContext
    node_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, pod: _Optional[_Union[PodContext, _Mapping]] = ..., node_names: _Optional[_Iterable[str]] = ...) -> None: ...

class NodeScore(_message.Message):
    __slots__ = ("node_name", "score", "confidence", "reason", "status", "predicted_slowdown", "telemetry_age_ms")
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_SLOWDOWN_FIELD_NUMBER: _ClassVar[int]
    TELEMETRY_AGE_MS_FIELD_NUMBER: _ClassVar[int]
    node_name: str
    score: float
    confidence: float
    reason: str
    status: ScoreStatus
    predicted_slowdown: float
    telemetry_age_ms: int
    def __init__(self, node_name: _Optional[str] = ..., score: _Optional[float] = ..., confidence: _Optional[float] = ..., reason: _Optional[str] = ..., status: _Optional[_Union[ScoreStatus, str]] = ..., predicted_slowdown: _Optional[float] = ..., telemetry_age_ms: _Optional[int] = ...) -> None: ...

class BatchScoreResponse(_message.Message):
    __slots__ = ("scores", "model_version", "elapsed_us", "profile")
    SCORES_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_US_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    scores: _containers.RepeatedCompositeFieldContainer[NodeScore]
    model_version: str
    elapsed_us: int
    profile: WorkloadProfile
    def __init__(self, scores: _Optional[_Iterable[_Union[NodeScore, _Mapping]]] = ..., model_version: _Optional[str] = ..., elapsed_us: _Optional[int] = ..., profile: _Optional[_Union[WorkloadProfile, str]] = ...) -> None: ...
