from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SessionRecord(_message.Message):
    __slots__ = ("session_id", "user_id", "scopes", "attributes", "create_time_ns", "refresh_time_ns", "idle_ttl_ns", "max_ttl_ns", "key_id", "token_digest", "refresh_digest", "generation", "previous", "spent_refresh_digests", "revoke_time_ns", "revoke_reason", "request_digest", "sealed_first_secrets")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    IDLE_TTL_NS_FIELD_NUMBER: _ClassVar[int]
    MAX_TTL_NS_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_DIGEST_FIELD_NUMBER: _ClassVar[int]
    REFRESH_DIGEST_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    SPENT_REFRESH_DIGESTS_FIELD_NUMBER: _ClassVar[int]
    REVOKE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    REVOKE_REASON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_DIGEST_FIELD_NUMBER: _ClassVar[int]
    SEALED_FIRST_SECRETS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    user_id: str
    scopes: _containers.RepeatedScalarFieldContainer[str]
    attributes: _containers.ScalarMap[str, str]
    create_time_ns: int
    refresh_time_ns: int
    idle_ttl_ns: int
    max_ttl_ns: int
    key_id: bytes
    token_digest: bytes
    refresh_digest: bytes
    generation: int
    previous: RotationRecord
    spent_refresh_digests: _containers.RepeatedScalarFieldContainer[bytes]
    revoke_time_ns: int
    revoke_reason: int
    request_digest: bytes
    sealed_first_secrets: bytes
    def __init__(self, session_id: _Optional[str] = ..., user_id: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ..., attributes: _Optional[_Mapping[str, str]] = ..., create_time_ns: _Optional[int] = ..., refresh_time_ns: _Optional[int] = ..., idle_ttl_ns: _Optional[int] = ..., max_ttl_ns: _Optional[int] = ..., key_id: _Optional[bytes] = ..., token_digest: _Optional[bytes] = ..., refresh_digest: _Optional[bytes] = ..., generation: _Optional[int] = ..., previous: _Optional[_Union[RotationRecord, _Mapping]] = ..., spent_refresh_digests: _Optional[_Iterable[bytes]] = ..., revoke_time_ns: _Optional[int] = ..., revoke_reason: _Optional[int] = ..., request_digest: _Optional[bytes] = ..., sealed_first_secrets: _Optional[bytes] = ...) -> None: ...

class RotationRecord(_message.Message):
    __slots__ = ("token_digest", "refresh_digest", "rotate_time_ns", "sealed_successor")
    TOKEN_DIGEST_FIELD_NUMBER: _ClassVar[int]
    REFRESH_DIGEST_FIELD_NUMBER: _ClassVar[int]
    ROTATE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    SEALED_SUCCESSOR_FIELD_NUMBER: _ClassVar[int]
    token_digest: bytes
    refresh_digest: bytes
    rotate_time_ns: int
    sealed_successor: bytes
    def __init__(self, token_digest: _Optional[bytes] = ..., refresh_digest: _Optional[bytes] = ..., rotate_time_ns: _Optional[int] = ..., sealed_successor: _Optional[bytes] = ...) -> None: ...

class MarksRecord(_message.Message):
    __slots__ = ("marks", "last_user_id")
    class MarksEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: MarkRecord
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[MarkRecord, _Mapping]] = ...) -> None: ...
    MARKS_FIELD_NUMBER: _ClassVar[int]
    LAST_USER_ID_FIELD_NUMBER: _ClassVar[int]
    marks: _containers.MessageMap[str, MarkRecord]
    last_user_id: str
    def __init__(self, marks: _Optional[_Mapping[str, MarkRecord]] = ..., last_user_id: _Optional[str] = ...) -> None: ...

class MarkRecord(_message.Message):
    __slots__ = ("revoked_before_ns", "except_session_id")
    REVOKED_BEFORE_NS_FIELD_NUMBER: _ClassVar[int]
    EXCEPT_SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    revoked_before_ns: int
    except_session_id: str
    def __init__(self, revoked_before_ns: _Optional[int] = ..., except_session_id: _Optional[str] = ...) -> None: ...
