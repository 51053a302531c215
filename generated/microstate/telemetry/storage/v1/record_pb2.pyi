from microstate.telemetry.v1 import telemetry_pb2 as _telemetry_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StoredBatch(_message.Message):
    __slots__ = ("producer_id", "batch_seq", "events", "accepted", "rejected", "error_message")
    PRODUCER_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_SEQ_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    producer_id: str
    batch_seq: int
    events: _containers.RepeatedCompositeFieldContainer[_telemetry_pb2.Event]
    accepted: int
    rejected: int
    error_message: str
    def __init__(self, producer_id: _Optional[str] = ..., batch_seq: _Optional[int] = ..., events: _Optional[_Iterable[_Union[_telemetry_pb2.Event, _Mapping]]] = ..., accepted: _Optional[int] = ..., rejected: _Optional[int] = ..., error_message: _Optional[str] = ...) -> None: ...

class Aggregate(_message.Message):
    __slots__ = ("count", "sum", "min", "max", "zero_count", "buckets")
    class BucketsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: int
        def __init__(self, key: _Optional[int] = ..., value: _Optional[int] = ...) -> None: ...
    COUNT_FIELD_NUMBER: _ClassVar[int]
    SUM_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    ZERO_COUNT_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    count: int
    sum: float
    min: float
    max: float
    zero_count: int
    buckets: _containers.ScalarMap[int, int]
    def __init__(self, count: _Optional[int] = ..., sum: _Optional[float] = ..., min: _Optional[float] = ..., max: _Optional[float] = ..., zero_count: _Optional[int] = ..., buckets: _Optional[_Mapping[int, int]] = ...) -> None: ...

class AttributeValues(_message.Message):
    __slots__ = ("values",)
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Aggregate
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Aggregate, _Mapping]] = ...) -> None: ...
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.MessageMap[str, Aggregate]
    def __init__(self, values: _Optional[_Mapping[str, Aggregate]] = ...) -> None: ...

class MinuteRollup(_message.Message):
    __slots__ = ("folded_through", "total", "by_attribute")
    class ByAttributeEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: AttributeValues
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[AttributeValues, _Mapping]] = ...) -> None: ...
    FOLDED_THROUGH_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    BY_ATTRIBUTE_FIELD_NUMBER: _ClassVar[int]
    folded_through: int
    total: Aggregate
    by_attribute: _containers.MessageMap[str, AttributeValues]
    def __init__(self, folded_through: _Optional[int] = ..., total: _Optional[_Union[Aggregate, _Mapping]] = ..., by_attribute: _Optional[_Mapping[str, AttributeValues]] = ...) -> None: ...

class Checkpoint(_message.Message):
    __slots__ = ("folded_through",)
    FOLDED_THROUGH_FIELD_NUMBER: _ClassVar[int]
    folded_through: int
    def __init__(self, folded_through: _Optional[int] = ...) -> None: ...
