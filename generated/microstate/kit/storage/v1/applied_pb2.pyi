from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class AppliedRequest(_message.Message):
    __slots__ = ("request_id", "request_digest", "apply_time_ns")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_DIGEST_FIELD_NUMBER: _ClassVar[int]
    APPLY_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    request_digest: bytes
    apply_time_ns: int
    def __init__(self, request_id: _Optional[str] = ..., request_digest: _Optional[bytes] = ..., apply_time_ns: _Optional[int] = ...) -> None: ...
