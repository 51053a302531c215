from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExportSubjectRequest(_message.Message):
    __slots__ = ("subject_id",)
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    def __init__(self, subject_id: _Optional[str] = ...) -> None: ...

class SubjectRecord(_message.Message):
    __slots__ = ("microstate", "kind", "key", "json")
    MICROSTATE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    microstate: str
    kind: str
    key: str
    json: str
    def __init__(self, microstate: _Optional[str] = ..., kind: _Optional[str] = ..., key: _Optional[str] = ..., json: _Optional[str] = ...) -> None: ...

class EraseSubjectRequest(_message.Message):
    __slots__ = ("subject_id", "request_id")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    request_id: str
    def __init__(self, subject_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class Retained(_message.Message):
    __slots__ = ("kind", "reason")
    KIND_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    kind: str
    reason: str
    def __init__(self, kind: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class EraseSubjectResponse(_message.Message):
    __slots__ = ("microstate", "erased_count", "retained", "replayed")
    MICROSTATE_FIELD_NUMBER: _ClassVar[int]
    ERASED_COUNT_FIELD_NUMBER: _ClassVar[int]
    RETAINED_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    microstate: str
    erased_count: int
    retained: _containers.RepeatedCompositeFieldContainer[Retained]
    replayed: bool
    def __init__(self, microstate: _Optional[str] = ..., erased_count: _Optional[int] = ..., retained: _Optional[_Iterable[_Union[Retained, _Mapping]]] = ..., replayed: _Optional[bool] = ...) -> None: ...
