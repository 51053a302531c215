import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Theme(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    THEME_UNSPECIFIED: _ClassVar[Theme]
    THEME_LIGHT: _ClassVar[Theme]
    THEME_DARK: _ClassVar[Theme]
    THEME_SYSTEM: _ClassVar[Theme]

class ChangeType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANGE_TYPE_UNSPECIFIED: _ClassVar[ChangeType]
    CHANGE_TYPE_CREATED: _ClassVar[ChangeType]
    CHANGE_TYPE_UPDATED: _ClassVar[ChangeType]
    CHANGE_TYPE_DELETED: _ClassVar[ChangeType]
    CHANGE_TYPE_HEARTBEAT: _ClassVar[ChangeType]
THEME_UNSPECIFIED: Theme
THEME_LIGHT: Theme
THEME_DARK: Theme
THEME_SYSTEM: Theme
CHANGE_TYPE_UNSPECIFIED: ChangeType
CHANGE_TYPE_CREATED: ChangeType
CHANGE_TYPE_UPDATED: ChangeType
CHANGE_TYPE_DELETED: ChangeType
CHANGE_TYPE_HEARTBEAT: ChangeType

class Profile(_message.Message):
    __slots__ = ("user_id", "name", "locale", "preferences", "consents", "embedding", "etag", "create_time", "update_time")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LOCALE_FIELD_NUMBER: _ClassVar[int]
    PREFERENCES_FIELD_NUMBER: _ClassVar[int]
    CONSENTS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    name: PersonName
    locale: str
    preferences: Preferences
    consents: _containers.RepeatedCompositeFieldContainer[Consent]
    embedding: Embedding
    etag: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, user_id: _Optional[str] = ..., name: _Optional[_Union[PersonName, _Mapping]] = ..., locale: _Optional[str] = ..., preferences: _Optional[_Union[Preferences, _Mapping]] = ..., consents: _Optional[_Iterable[_Union[Consent, _Mapping]]] = ..., embedding: _Optional[_Union[Embedding, _Mapping]] = ..., etag: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PersonName(_message.Message):
    __slots__ = ("display_name", "given_name", "family_name")
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    GIVEN_NAME_FIELD_NUMBER: _ClassVar[int]
    FAMILY_NAME_FIELD_NUMBER: _ClassVar[int]
    display_name: str
    given_name: str
    family_name: str
    def __init__(self, display_name: _Optional[str] = ..., given_name: _Optional[str] = ..., family_name: _Optional[str] = ...) -> None: ...

class Preferences(_message.Message):
    __slots__ = ("theme", "content_languages", "marketing_emails")
    THEME_FIELD_NUMBER: _ClassVar[int]
    CONTENT_LANGUAGES_FIELD_NUMBER: _ClassVar[int]
    MARKETING_EMAILS_FIELD_NUMBER: _ClassVar[int]
    theme: Theme
    content_languages: _containers.RepeatedScalarFieldContainer[str]
    marketing_emails: bool
    def __init__(self, theme: _Optional[_Union[Theme, str]] = ..., content_languages: _Optional[_Iterable[str]] = ..., marketing_emails: _Optional[bool] = ...) -> None: ...

class Consent(_message.Message):
    __slots__ = ("purpose", "granted", "decide_time")
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    DECIDE_TIME_FIELD_NUMBER: _ClassVar[int]
    purpose: str
    granted: bool
    decide_time: _timestamp_pb2.Timestamp
    def __init__(self, purpose: _Optional[str] = ..., granted: _Optional[bool] = ..., decide_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Embedding(_message.Message):
    __slots__ = ("values", "model", "model_version")
    VALUES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    model: str
    model_version: str
    def __init__(self, values: _Optional[_Iterable[float]] = ..., model: _Optional[str] = ..., model_version: _Optional[str] = ...) -> None: ...

class GetProfileRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class BatchGetProfilesRequest(_message.Message):
    __slots__ = ("user_ids",)
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    user_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, user_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class BatchGetProfilesResponse(_message.Message):
    __slots__ = ("profiles", "missing_user_ids")
    PROFILES_FIELD_NUMBER: _ClassVar[int]
    MISSING_USER_IDS_FIELD_NUMBER: _ClassVar[int]
    profiles: _containers.RepeatedCompositeFieldContainer[Profile]
    missing_user_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, profiles: _Optional[_Iterable[_Union[Profile, _Mapping]]] = ..., missing_user_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ListProfilesRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "user_id_prefix")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    USER_ID_PREFIX_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    user_id_prefix: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., user_id_prefix: _Optional[str] = ...) -> None: ...

class ListProfilesResponse(_message.Message):
    __slots__ = ("profiles", "next_page_token")
    PROFILES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    profiles: _containers.RepeatedCompositeFieldContainer[Profile]
    next_page_token: str
    def __init__(self, profiles: _Optional[_Iterable[_Union[Profile, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CreateProfileRequest(_message.Message):
    __slots__ = ("profile", "request_id")
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    profile: Profile
    request_id: str
    def __init__(self, profile: _Optional[_Union[Profile, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class UpdateProfileRequest(_message.Message):
    __slots__ = ("profile", "update_mask", "request_id")
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    profile: Profile
    update_mask: _field_mask_pb2.FieldMask
    request_id: str
    def __init__(self, profile: _Optional[_Union[Profile, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class DeleteProfileRequest(_message.Message):
    __slots__ = ("user_id", "etag", "request_id")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    etag: str
    request_id: str
    def __init__(self, user_id: _Optional[str] = ..., etag: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class DeleteProfileResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchProfilesRequest(_message.Message):
    __slots__ = ("resume_token", "user_id_prefix", "heartbeat_interval")
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    USER_ID_PREFIX_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    resume_token: str
    user_id_prefix: str
    heartbeat_interval: _duration_pb2.Duration
    def __init__(self, resume_token: _Optional[str] = ..., user_id_prefix: _Optional[str] = ..., heartbeat_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class WatchProfilesResponse(_message.Message):
    __slots__ = ("change_type", "user_id", "profile", "resume_token", "commit_time")
    CHANGE_TYPE_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    COMMIT_TIME_FIELD_NUMBER: _ClassVar[int]
    change_type: ChangeType
    user_id: str
    profile: Profile
    resume_token: str
    commit_time: _timestamp_pb2.Timestamp
    def __init__(self, change_type: _Optional[_Union[ChangeType, str]] = ..., user_id: _Optional[str] = ..., profile: _Optional[_Union[Profile, _Mapping]] = ..., resume_token: _Optional[str] = ..., commit_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
