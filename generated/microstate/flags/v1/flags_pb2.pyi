import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FlagState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FLAG_STATE_UNSPECIFIED: _ClassVar[FlagState]
    FLAG_STATE_ENABLED: _ClassVar[FlagState]
    FLAG_STATE_DISABLED: _ClassVar[FlagState]

class VariantType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VARIANT_TYPE_UNSPECIFIED: _ClassVar[VariantType]
    VARIANT_TYPE_BOOL: _ClassVar[VariantType]
    VARIANT_TYPE_STRING: _ClassVar[VariantType]
    VARIANT_TYPE_NUMBER: _ClassVar[VariantType]
    VARIANT_TYPE_OBJECT: _ClassVar[VariantType]

class Operator(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OPERATOR_UNSPECIFIED: _ClassVar[Operator]
    OPERATOR_EQUALS: _ClassVar[Operator]
    OPERATOR_IN: _ClassVar[Operator]
    OPERATOR_STARTS_WITH: _ClassVar[Operator]
    OPERATOR_ENDS_WITH: _ClassVar[Operator]
    OPERATOR_LESS_THAN: _ClassVar[Operator]
    OPERATOR_LESS_THAN_OR_EQUAL: _ClassVar[Operator]
    OPERATOR_GREATER_THAN: _ClassVar[Operator]
    OPERATOR_GREATER_THAN_OR_EQUAL: _ClassVar[Operator]
    OPERATOR_SEMVER_EQUAL: _ClassVar[Operator]
    OPERATOR_SEMVER_LESS_THAN: _ClassVar[Operator]
    OPERATOR_SEMVER_LESS_THAN_OR_EQUAL: _ClassVar[Operator]
    OPERATOR_SEMVER_GREATER_THAN: _ClassVar[Operator]
    OPERATOR_SEMVER_GREATER_THAN_OR_EQUAL: _ClassVar[Operator]
    OPERATOR_EXISTS: _ClassVar[Operator]

class Reason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REASON_UNSPECIFIED: _ClassVar[Reason]
    REASON_STATIC: _ClassVar[Reason]
    REASON_TARGETING_MATCH: _ClassVar[Reason]
    REASON_SPLIT: _ClassVar[Reason]
    REASON_DEFAULT: _ClassVar[Reason]
    REASON_DISABLED: _ClassVar[Reason]
    REASON_ERROR: _ClassVar[Reason]
    REASON_STALE: _ClassVar[Reason]
    REASON_CACHED: _ClassVar[Reason]

class ErrorCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_CODE_UNSPECIFIED: _ClassVar[ErrorCode]
    ERROR_CODE_FLAG_NOT_FOUND: _ClassVar[ErrorCode]
    ERROR_CODE_TYPE_MISMATCH: _ClassVar[ErrorCode]
    ERROR_CODE_TARGETING_KEY_MISSING: _ClassVar[ErrorCode]
    ERROR_CODE_INVALID_CONTEXT: _ClassVar[ErrorCode]
    ERROR_CODE_PROVIDER_NOT_READY: _ClassVar[ErrorCode]
    ERROR_CODE_GENERAL: _ClassVar[ErrorCode]
    ERROR_CODE_PARSE_ERROR: _ClassVar[ErrorCode]
FLAG_STATE_UNSPECIFIED: FlagState
FLAG_STATE_ENABLED: FlagState
FLAG_STATE_DISABLED: FlagState
VARIANT_TYPE_UNSPECIFIED: VariantType
VARIANT_TYPE_BOOL: VariantType
VARIANT_TYPE_STRING: VariantType
VARIANT_TYPE_NUMBER: VariantType
VARIANT_TYPE_OBJECT: VariantType
OPERATOR_UNSPECIFIED: Operator
OPERATOR_EQUALS: Operator
OPERATOR_IN: Operator
OPERATOR_STARTS_WITH: Operator
OPERATOR_ENDS_WITH: Operator
OPERATOR_LESS_THAN: Operator
OPERATOR_LESS_THAN_OR_EQUAL: Operator
OPERATOR_GREATER_THAN: Operator
OPERATOR_GREATER_THAN_OR_EQUAL: Operator
OPERATOR_SEMVER_EQUAL: Operator
OPERATOR_SEMVER_LESS_THAN: Operator
OPERATOR_SEMVER_LESS_THAN_OR_EQUAL: Operator
OPERATOR_SEMVER_GREATER_THAN: Operator
OPERATOR_SEMVER_GREATER_THAN_OR_EQUAL: Operator
OPERATOR_EXISTS: Operator
REASON_UNSPECIFIED: Reason
REASON_STATIC: Reason
REASON_TARGETING_MATCH: Reason
REASON_SPLIT: Reason
REASON_DEFAULT: Reason
REASON_DISABLED: Reason
REASON_ERROR: Reason
REASON_STALE: Reason
REASON_CACHED: Reason
ERROR_CODE_UNSPECIFIED: ErrorCode
ERROR_CODE_FLAG_NOT_FOUND: ErrorCode
ERROR_CODE_TYPE_MISMATCH: ErrorCode
ERROR_CODE_TARGETING_KEY_MISSING: ErrorCode
ERROR_CODE_INVALID_CONTEXT: ErrorCode
ERROR_CODE_PROVIDER_NOT_READY: ErrorCode
ERROR_CODE_GENERAL: ErrorCode
ERROR_CODE_PARSE_ERROR: ErrorCode

class Flag(_message.Message):
    __slots__ = ("key", "state", "type", "variants", "default_variant", "rules", "metadata", "description", "etag", "revision", "create_time", "update_time")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    KEY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_VARIANT_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    key: str
    state: FlagState
    type: VariantType
    variants: _containers.RepeatedCompositeFieldContainer[Variant]
    default_variant: str
    rules: _containers.RepeatedCompositeFieldContainer[Rule]
    metadata: _containers.ScalarMap[str, str]
    description: str
    etag: str
    revision: int
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, key: _Optional[str] = ..., state: _Optional[_Union[FlagState, str]] = ..., type: _Optional[_Union[VariantType, str]] = ..., variants: _Optional[_Iterable[_Union[Variant, _Mapping]]] = ..., default_variant: _Optional[str] = ..., rules: _Optional[_Iterable[_Union[Rule, _Mapping]]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., description: _Optional[str] = ..., etag: _Optional[str] = ..., revision: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Variant(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: VariantValue
    def __init__(self, name: _Optional[str] = ..., value: _Optional[_Union[VariantValue, _Mapping]] = ...) -> None: ...

class VariantValue(_message.Message):
    __slots__ = ("bool_value", "string_value", "number_value", "object_value")
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    NUMBER_VALUE_FIELD_NUMBER: _ClassVar[int]
    OBJECT_VALUE_FIELD_NUMBER: _ClassVar[int]
    bool_value: bool
    string_value: str
    number_value: float
    object_value: _struct_pb2.Struct
    def __init__(self, bool_value: _Optional[bool] = ..., string_value: _Optional[str] = ..., number_value: _Optional[float] = ..., object_value: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class Rule(_message.Message):
    __slots__ = ("conditions", "variant", "split", "rollout", "description")
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    conditions: _containers.RepeatedCompositeFieldContainer[Condition]
    variant: str
    split: Split
    rollout: Rollout
    description: str
    def __init__(self, conditions: _Optional[_Iterable[_Union[Condition, _Mapping]]] = ..., variant: _Optional[str] = ..., split: _Optional[_Union[Split, _Mapping]] = ..., rollout: _Optional[_Union[Rollout, _Mapping]] = ..., description: _Optional[str] = ...) -> None: ...

class Condition(_message.Message):
    __slots__ = ("attribute", "operator", "values", "negate")
    ATTRIBUTE_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    NEGATE_FIELD_NUMBER: _ClassVar[int]
    attribute: str
    operator: Operator
    values: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Value]
    negate: bool
    def __init__(self, attribute: _Optional[str] = ..., operator: _Optional[_Union[Operator, str]] = ..., values: _Optional[_Iterable[_Union[_struct_pb2.Value, _Mapping]]] = ..., negate: _Optional[bool] = ...) -> None: ...

class Bucketing(_message.Message):
    __slots__ = ("bucket_by", "salt")
    BUCKET_BY_FIELD_NUMBER: _ClassVar[int]
    SALT_FIELD_NUMBER: _ClassVar[int]
    bucket_by: str
    salt: str
    def __init__(self, bucket_by: _Optional[str] = ..., salt: _Optional[str] = ...) -> None: ...

class Split(_message.Message):
    __slots__ = ("bucketing", "weights")
    BUCKETING_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    bucketing: Bucketing
    weights: _containers.RepeatedCompositeFieldContainer[SplitWeight]
    def __init__(self, bucketing: _Optional[_Union[Bucketing, _Mapping]] = ..., weights: _Optional[_Iterable[_Union[SplitWeight, _Mapping]]] = ...) -> None: ...

class SplitWeight(_message.Message):
    __slots__ = ("variant", "weight")
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    variant: str
    weight: int
    def __init__(self, variant: _Optional[str] = ..., weight: _Optional[int] = ...) -> None: ...

class Rollout(_message.Message):
    __slots__ = ("bucketing", "basis_points")
    BUCKETING_FIELD_NUMBER: _ClassVar[int]
    BASIS_POINTS_FIELD_NUMBER: _ClassVar[int]
    bucketing: Bucketing
    basis_points: int
    def __init__(self, bucketing: _Optional[_Union[Bucketing, _Mapping]] = ..., basis_points: _Optional[int] = ...) -> None: ...

class Evaluation(_message.Message):
    __slots__ = ("flag_key", "value", "variant", "reason", "error_code", "error_message", "revision", "flag_metadata")
    class FlagMetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FLAG_KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    FLAG_METADATA_FIELD_NUMBER: _ClassVar[int]
    flag_key: str
    value: VariantValue
    variant: str
    reason: Reason
    error_code: ErrorCode
    error_message: str
    revision: int
    flag_metadata: _containers.ScalarMap[str, str]
    def __init__(self, flag_key: _Optional[str] = ..., value: _Optional[_Union[VariantValue, _Mapping]] = ..., variant: _Optional[str] = ..., reason: _Optional[_Union[Reason, str]] = ..., error_code: _Optional[_Union[ErrorCode, str]] = ..., error_message: _Optional[str] = ..., revision: _Optional[int] = ..., flag_metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class EvaluationContext(_message.Message):
    __slots__ = ("targeting_key", "attributes")
    TARGETING_KEY_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    targeting_key: str
    attributes: _struct_pb2.Struct
    def __init__(self, targeting_key: _Optional[str] = ..., attributes: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class GetFlagRequest(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: str
    def __init__(self, key: _Optional[str] = ...) -> None: ...

class ListFlagsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListFlagsResponse(_message.Message):
    __slots__ = ("flags", "next_page_token")
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    flags: _containers.RepeatedCompositeFieldContainer[Flag]
    next_page_token: str
    def __init__(self, flags: _Optional[_Iterable[_Union[Flag, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CreateFlagRequest(_message.Message):
    __slots__ = ("flag", "validate_only")
    FLAG_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    flag: Flag
    validate_only: bool
    def __init__(self, flag: _Optional[_Union[Flag, _Mapping]] = ..., validate_only: _Optional[bool] = ...) -> None: ...

class UpdateFlagRequest(_message.Message):
    __slots__ = ("flag", "update_mask", "validate_only")
    FLAG_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    flag: Flag
    update_mask: _field_mask_pb2.FieldMask
    validate_only: bool
    def __init__(self, flag: _Optional[_Union[Flag, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., validate_only: _Optional[bool] = ...) -> None: ...

class UpdateFlagResponse(_message.Message):
    __slots__ = ("flag", "impact")
    FLAG_FIELD_NUMBER: _ClassVar[int]
    IMPACT_FIELD_NUMBER: _ClassVar[int]
    flag: Flag
    impact: Impact
    def __init__(self, flag: _Optional[_Union[Flag, _Mapping]] = ..., impact: _Optional[_Union[Impact, _Mapping]] = ...) -> None: ...

class Impact(_message.Message):
    __slots__ = ("rules", "max_reassigned_fraction")
    RULES_FIELD_NUMBER: _ClassVar[int]
    MAX_REASSIGNED_FRACTION_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[RuleImpact]
    max_reassigned_fraction: float
    def __init__(self, rules: _Optional[_Iterable[_Union[RuleImpact, _Mapping]]] = ..., max_reassigned_fraction: _Optional[float] = ...) -> None: ...

class RuleImpact(_message.Message):
    __slots__ = ("rule_index", "reassigned_fraction")
    RULE_INDEX_FIELD_NUMBER: _ClassVar[int]
    REASSIGNED_FRACTION_FIELD_NUMBER: _ClassVar[int]
    rule_index: int
    reassigned_fraction: float
    def __init__(self, rule_index: _Optional[int] = ..., reassigned_fraction: _Optional[float] = ...) -> None: ...

class DeleteFlagRequest(_message.Message):
    __slots__ = ("key", "etag")
    KEY_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    key: str
    etag: str
    def __init__(self, key: _Optional[str] = ..., etag: _Optional[str] = ...) -> None: ...

class DeleteFlagResponse(_message.Message):
    __slots__ = ("revision",)
    REVISION_FIELD_NUMBER: _ClassVar[int]
    revision: int
    def __init__(self, revision: _Optional[int] = ...) -> None: ...

class EvaluateFlagRequest(_message.Message):
    __slots__ = ("key", "context", "expected_type")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_TYPE_FIELD_NUMBER: _ClassVar[int]
    key: str
    context: EvaluationContext
    expected_type: VariantType
    def __init__(self, key: _Optional[str] = ..., context: _Optional[_Union[EvaluationContext, _Mapping]] = ..., expected_type: _Optional[_Union[VariantType, str]] = ...) -> None: ...

class EvaluateAllRequest(_message.Message):
    __slots__ = ("context",)
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    context: EvaluationContext
    def __init__(self, context: _Optional[_Union[EvaluationContext, _Mapping]] = ...) -> None: ...

class EvaluateAllResponse(_message.Message):
    __slots__ = ("evaluations", "revision")
    EVALUATIONS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    evaluations: _containers.RepeatedCompositeFieldContainer[Evaluation]
    revision: int
    def __init__(self, evaluations: _Optional[_Iterable[_Union[Evaluation, _Mapping]]] = ..., revision: _Optional[int] = ...) -> None: ...

class SyncFlagsRequest(_message.Message):
    __slots__ = ("since_revision",)
    SINCE_REVISION_FIELD_NUMBER: _ClassVar[int]
    since_revision: int
    def __init__(self, since_revision: _Optional[int] = ...) -> None: ...

class SyncFlagsResponse(_message.Message):
    __slots__ = ("snapshot", "delta", "heartbeat")
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    snapshot: SnapshotChunk
    delta: Delta
    heartbeat: Heartbeat
    def __init__(self, snapshot: _Optional[_Union[SnapshotChunk, _Mapping]] = ..., delta: _Optional[_Union[Delta, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ...) -> None: ...

class SnapshotChunk(_message.Message):
    __slots__ = ("revision", "flags", "last")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    revision: int
    flags: _containers.RepeatedCompositeFieldContainer[Flag]
    last: bool
    def __init__(self, revision: _Optional[int] = ..., flags: _Optional[_Iterable[_Union[Flag, _Mapping]]] = ..., last: _Optional[bool] = ...) -> None: ...

class Delta(_message.Message):
    __slots__ = ("revision", "upserts", "deletes")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    UPSERTS_FIELD_NUMBER: _ClassVar[int]
    DELETES_FIELD_NUMBER: _ClassVar[int]
    revision: int
    upserts: _containers.RepeatedCompositeFieldContainer[Flag]
    deletes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, revision: _Optional[int] = ..., upserts: _Optional[_Iterable[_Union[Flag, _Mapping]]] = ..., deletes: _Optional[_Iterable[str]] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("revision", "server_time", "heartbeat_interval")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    SERVER_TIME_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    revision: int
    server_time: _timestamp_pb2.Timestamp
    heartbeat_interval: _duration_pb2.Duration
    def __init__(self, revision: _Optional[int] = ..., server_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., heartbeat_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...
