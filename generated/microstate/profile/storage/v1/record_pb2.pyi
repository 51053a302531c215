import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from microstate.kit.storage.v1 import applied_pb2 as _applied_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WrittenBy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WRITTEN_BY_UNSPECIFIED: _ClassVar[WrittenBy]
    WRITTEN_BY_PROFILE_V1: _ClassVar[WrittenBy]
    WRITTEN_BY_PROFILE_V2: _ClassVar[WrittenBy]
WRITTEN_BY_UNSPECIFIED: WrittenBy
WRITTEN_BY_PROFILE_V1: WrittenBy
WRITTEN_BY_PROFILE_V2: WrittenBy

class ProfileRecord(_message.Message):
    __slots__ = ("user_id", "display_name", "locale", "attributes", "embedding_f32le", "create_time_ns", "update_time_ns", "written_by", "given_name", "family_name", "consents", "embedding_model", "embedding_model_version", "applied_requests", "written_by_code")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    LOCALE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_F32LE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    WRITTEN_BY_FIELD_NUMBER: _ClassVar[int]
    GIVEN_NAME_FIELD_NUMBER: _ClassVar[int]
    FAMILY_NAME_FIELD_NUMBER: _ClassVar[int]
    CONSENTS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_MODEL_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    APPLIED_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    WRITTEN_BY_CODE_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    display_name: str
    locale: str
    attributes: _containers.ScalarMap[str, str]
    embedding_f32le: bytes
    create_time_ns: int
    update_time_ns: int
    written_by: str
    given_name: str
    family_name: str
    consents: _containers.RepeatedCompositeFieldContainer[ConsentRecord]
    embedding_model: str
    embedding_model_version: str
    applied_requests: _containers.RepeatedCompositeFieldContainer[_applied_pb2.AppliedRequest]
    written_by_code: WrittenBy
    def __init__(self, user_id: _Optional[str] = ..., display_name: _Optional[str] = ..., locale: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ..., embedding_f32le: _Optional[bytes] = ..., create_time_ns: _Optional[int] = ..., update_time_ns: _Optional[int] = ..., written_by: _Optional[str] = ..., given_name: _Optional[str] = ..., family_name: _Optional[str] = ..., consents: _Optional[_Iterable[_Union[ConsentRecord, _Mapping]]] = ..., embedding_model: _Optional[str] = ..., embedding_model_version: _Optional[str] = ..., applied_requests: _Optional[_Iterable[_Union[_applied_pb2.AppliedRequest, _Mapping]]] = ..., written_by_code: _Optional[_Union[WrittenBy, str]] = ...) -> None: ...

class ConsentRecord(_message.Message):
    __slots__ = ("purpose", "granted", "decide_time_ns", "decide_time")
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    DECIDE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    DECIDE_TIME_FIELD_NUMBER: _ClassVar[int]
    purpose: str
    granted: bool
    decide_time_ns: int
    decide_time: _timestamp_pb2.Timestamp
    def __init__(self, purpose: _Optional[str] = ..., granted: _Optional[bool] = ..., decide_time_ns: _Optional[int] = ..., decide_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
