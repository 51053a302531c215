from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelRecord(_message.Message):
    __slots__ = ("description", "labels", "latest_version", "create_time_ns", "update_time_ns", "model_id")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    LATEST_VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    description: str
    labels: _containers.ScalarMap[str, str]
    latest_version: int
    create_time_ns: int
    update_time_ns: int
    model_id: str
    def __init__(self, description: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., latest_version: _Optional[int] = ..., create_time_ns: _Optional[int] = ..., update_time_ns: _Optional[int] = ..., model_id: _Optional[str] = ...) -> None: ...

class VersionRecord(_message.Message):
    __slots__ = ("digest", "size_bytes", "media_type", "metadata", "create_time_ns", "upload_id", "model_id", "version")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    digest: str
    size_bytes: int
    media_type: str
    metadata: _containers.ScalarMap[str, str]
    create_time_ns: int
    upload_id: str
    model_id: str
    version: int
    def __init__(self, digest: _Optional[str] = ..., size_bytes: _Optional[int] = ..., media_type: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., create_time_ns: _Optional[int] = ..., upload_id: _Optional[str] = ..., model_id: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class AliasMoveRecord(_message.Message):
    __slots__ = ("from_version", "to_version", "move_time_ns")
    FROM_VERSION_FIELD_NUMBER: _ClassVar[int]
    TO_VERSION_FIELD_NUMBER: _ClassVar[int]
    MOVE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    from_version: int
    to_version: int
    move_time_ns: int
    def __init__(self, from_version: _Optional[int] = ..., to_version: _Optional[int] = ..., move_time_ns: _Optional[int] = ...) -> None: ...

class AliasRecord(_message.Message):
    __slots__ = ("version", "update_time_ns", "history", "model_id", "alias")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    version: int
    update_time_ns: int
    history: _containers.RepeatedCompositeFieldContainer[AliasMoveRecord]
    model_id: str
    alias: str
    def __init__(self, version: _Optional[int] = ..., update_time_ns: _Optional[int] = ..., history: _Optional[_Iterable[_Union[AliasMoveRecord, _Mapping]]] = ..., model_id: _Optional[str] = ..., alias: _Optional[str] = ...) -> None: ...

class UploadRecord(_message.Message):
    __slots__ = ("model_id", "digest", "size_bytes", "media_type", "metadata", "version")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    digest: str
    size_bytes: int
    media_type: str
    metadata: _containers.ScalarMap[str, str]
    version: int
    def __init__(self, model_id: _Optional[str] = ..., digest: _Optional[str] = ..., size_bytes: _Optional[int] = ..., media_type: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., version: _Optional[int] = ...) -> None: ...
