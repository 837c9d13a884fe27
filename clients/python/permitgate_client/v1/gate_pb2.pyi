import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Utility(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UTILITY_UNSPECIFIED: _ClassVar[Utility]
    UTILITY_WATER: _ClassVar[Utility]
    UTILITY_POWER: _ClassVar[Utility]
    UTILITY_GAS: _ClassVar[Utility]
    UTILITY_HEAT: _ClassVar[Utility]

class ConnectionKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONNECTION_KIND_UNSPECIFIED: _ClassVar[ConnectionKind]
    CONNECTION_KIND_PERMANENT: _ClassVar[ConnectionKind]
    CONNECTION_KIND_TEMPORARY: _ClassVar[ConnectionKind]

class RegistrationKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REGISTRATION_KIND_UNSPECIFIED: _ClassVar[RegistrationKind]
    REGISTRATION_KIND_INITIAL: _ClassVar[RegistrationKind]
    REGISTRATION_KIND_TRANSFER: _ClassVar[RegistrationKind]
    REGISTRATION_KIND_MORTGAGE: _ClassVar[RegistrationKind]

class Office(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OFFICE_UNSPECIFIED: _ClassVar[Office]
    OFFICE_MARKET_REGULATION: _ClassVar[Office]
    OFFICE_CULTURE: _ClassVar[Office]
    OFFICE_HEALTH: _ClassVar[Office]
    OFFICE_TAX: _ClassVar[Office]
    OFFICE_CIVIL_DEFENSE: _ClassVar[Office]
    OFFICE_ENVIRONMENT: _ClassVar[Office]
    OFFICE_FIRE: _ClassVar[Office]

class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_UNSPECIFIED: _ClassVar[Verdict]
    VERDICT_ALLOW: _ClassVar[Verdict]
    VERDICT_ALLOW_TEMPORARY: _ClassVar[Verdict]
    VERDICT_NOTIFY: _ClassVar[Verdict]
    VERDICT_REVIEW: _ClassVar[Verdict]
    VERDICT_DENY: _ClassVar[Verdict]

class ReasonCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REASON_CODE_UNSPECIFIED: _ClassVar[ReasonCode]
    REASON_CODE_NOT_IN_REGISTRY: _ClassVar[ReasonCode]
    REASON_CODE_MISSING_PERMIT: _ClassVar[ReasonCode]
    REASON_CODE_PERMIT_EXPIRED: _ClassVar[ReasonCode]
    REASON_CODE_PERMIT_SUSPENDED: _ClassVar[ReasonCode]
    REASON_CODE_PERMIT_REVOKED: _ClassVar[ReasonCode]
    REASON_CODE_STRUCTURE_FLAGGED: _ClassVar[ReasonCode]
    REASON_CODE_CASE_PENDING: _ClassVar[ReasonCode]
    REASON_CODE_USE_MISMATCH: _ClassVar[ReasonCode]
    REASON_CODE_TEMPORARY_ONLY: _ClassVar[ReasonCode]
    REASON_CODE_REGISTRY_STALE: _ClassVar[ReasonCode]
    REASON_CODE_RECORD_UNVERIFIED: _ClassVar[ReasonCode]
    REASON_CODE_PARTY_SUSPENDED: _ClassVar[ReasonCode]

class PermitKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PERMIT_KIND_UNSPECIFIED: _ClassVar[PermitKind]
    PERMIT_KIND_LAND_USE_PLANNING: _ClassVar[PermitKind]
    PERMIT_KIND_LAND_CERTIFICATE: _ClassVar[PermitKind]
    PERMIT_KIND_CONSTRUCTION_PLANNING: _ClassVar[PermitKind]
    PERMIT_KIND_TEMPORARY_CONSTRUCTION_PLANNING: _ClassVar[PermitKind]
    PERMIT_KIND_RURAL_CONSTRUCTION_PLANNING: _ClassVar[PermitKind]
    PERMIT_KIND_CONSTRUCTION_WORKS: _ClassVar[PermitKind]
    PERMIT_KIND_PROPERTY_OWNERSHIP: _ClassVar[PermitKind]

class Asking(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ASKING_UNSPECIFIED: _ClassVar[Asking]
    ASKING_PLANNING: _ClassVar[Asking]
    ASKING_HOUSING: _ClassVar[Asking]

class ChangeCause(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANGE_CAUSE_UNSPECIFIED: _ClassVar[ChangeCause]
    CHANGE_CAUSE_CURRENT: _ClassVar[ChangeCause]
    CHANGE_CAUSE_RECORD_CHANGED: _ClassVar[ChangeCause]
    CHANGE_CAUSE_TIME_PASSED: _ClassVar[ChangeCause]
    CHANGE_CAUSE_REGISTRY_STALE: _ClassVar[ChangeCause]
    CHANGE_CAUSE_REGISTRY_FRESH: _ClassVar[ChangeCause]
    CHANGE_CAUSE_PROGRESS: _ClassVar[ChangeCause]
UTILITY_UNSPECIFIED: Utility
UTILITY_WATER: Utility
UTILITY_POWER: Utility
UTILITY_GAS: Utility
UTILITY_HEAT: Utility
CONNECTION_KIND_UNSPECIFIED: ConnectionKind
CONNECTION_KIND_PERMANENT: ConnectionKind
CONNECTION_KIND_TEMPORARY: ConnectionKind
REGISTRATION_KIND_UNSPECIFIED: RegistrationKind
REGISTRATION_KIND_INITIAL: RegistrationKind
REGISTRATION_KIND_TRANSFER: RegistrationKind
REGISTRATION_KIND_MORTGAGE: RegistrationKind
OFFICE_UNSPECIFIED: Office
OFFICE_MARKET_REGULATION: Office
OFFICE_CULTURE: Office
OFFICE_HEALTH: Office
OFFICE_TAX: Office
OFFICE_CIVIL_DEFENSE: Office
OFFICE_ENVIRONMENT: Office
OFFICE_FIRE: Office
VERDICT_UNSPECIFIED: Verdict
VERDICT_ALLOW: Verdict
VERDICT_ALLOW_TEMPORARY: Verdict
VERDICT_NOTIFY: Verdict
VERDICT_REVIEW: Verdict
VERDICT_DENY: Verdict
REASON_CODE_UNSPECIFIED: ReasonCode
REASON_CODE_NOT_IN_REGISTRY: ReasonCode
REASON_CODE_MISSING_PERMIT: ReasonCode
REASON_CODE_PERMIT_EXPIRED: ReasonCode
REASON_CODE_PERMIT_SUSPENDED: ReasonCode
REASON_CODE_PERMIT_REVOKED: ReasonCode
REASON_CODE_STRUCTURE_FLAGGED: ReasonCode
REASON_CODE_CASE_PENDING: ReasonCode
REASON_CODE_USE_MISMATCH: ReasonCode
REASON_CODE_TEMPORARY_ONLY: ReasonCode
REASON_CODE_REGISTRY_STALE: ReasonCode
REASON_CODE_RECORD_UNVERIFIED: ReasonCode
REASON_CODE_PARTY_SUSPENDED: ReasonCode
PERMIT_KIND_UNSPECIFIED: PermitKind
PERMIT_KIND_LAND_USE_PLANNING: PermitKind
PERMIT_KIND_LAND_CERTIFICATE: PermitKind
PERMIT_KIND_CONSTRUCTION_PLANNING: PermitKind
PERMIT_KIND_TEMPORARY_CONSTRUCTION_PLANNING: PermitKind
PERMIT_KIND_RURAL_CONSTRUCTION_PLANNING: PermitKind
PERMIT_KIND_CONSTRUCTION_WORKS: PermitKind
PERMIT_KIND_PROPERTY_OWNERSHIP: PermitKind
ASKING_UNSPECIFIED: Asking
ASKING_PLANNING: Asking
ASKING_HOUSING: Asking
CHANGE_CAUSE_UNSPECIFIED: ChangeCause
CHANGE_CAUSE_CURRENT: ChangeCause
CHANGE_CAUSE_RECORD_CHANGED: ChangeCause
CHANGE_CAUSE_TIME_PASSED: ChangeCause
CHANGE_CAUSE_REGISTRY_STALE: ChangeCause
CHANGE_CAUSE_REGISTRY_FRESH: ChangeCause
CHANGE_CAUSE_PROGRESS: ChangeCause

class ConnectionCheck(_message.Message):
    __slots__ = ("structure_id", "utility", "kind", "requested_until", "application_id", "receipt")
    STRUCTURE_ID_FIELD_NUMBER: _ClassVar[int]
    UTILITY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_UNTIL_FIELD_NUMBER: _ClassVar[int]
    APPLICATION_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    structure_id: str
    utility: Utility
    kind: ConnectionKind
    requested_until: _timestamp_pb2.Timestamp
    application_id: str
    receipt: bool
    def __init__(self, structure_id: _Optional[str] = ..., utility: _Optional[_Union[Utility, str]] = ..., kind: _Optional[_Union[ConnectionKind, str]] = ..., requested_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., application_id: _Optional[str] = ..., receipt: _Optional[bool] = ...) -> None: ...

class RegistrationCheck(_message.Message):
    __slots__ = ("structure_id", "kind", "application_id", "receipt")
    STRUCTURE_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    APPLICATION_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    structure_id: str
    kind: RegistrationKind
    application_id: str
    receipt: bool
    def __init__(self, structure_id: _Optional[str] = ..., kind: _Optional[_Union[RegistrationKind, str]] = ..., application_id: _Optional[str] = ..., receipt: _Optional[bool] = ...) -> None: ...

class PremisesCheck(_message.Message):
    __slots__ = ("structure_id", "office", "declared_use", "application_id", "receipt")
    STRUCTURE_ID_FIELD_NUMBER: _ClassVar[int]
    OFFICE_FIELD_NUMBER: _ClassVar[int]
    DECLARED_USE_FIELD_NUMBER: _ClassVar[int]
    APPLICATION_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    structure_id: str
    office: Office
    declared_use: str
    application_id: str
    receipt: bool
    def __init__(self, structure_id: _Optional[str] = ..., office: _Optional[_Union[Office, str]] = ..., declared_use: _Optional[str] = ..., application_id: _Optional[str] = ..., receipt: _Optional[bool] = ...) -> None: ...

class ApplicantCheck(_message.Message):
    __slots__ = ("party_id", "asking", "application_id", "receipt")
    PARTY_ID_FIELD_NUMBER: _ClassVar[int]
    ASKING_FIELD_NUMBER: _ClassVar[int]
    APPLICATION_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    party_id: str
    asking: Asking
    application_id: str
    receipt: bool
    def __init__(self, party_id: _Optional[str] = ..., asking: _Optional[_Union[Asking, str]] = ..., application_id: _Optional[str] = ..., receipt: _Optional[bool] = ...) -> None: ...

class Check(_message.Message):
    __slots__ = ("correlation_id", "connection", "registration", "premises", "applicant")
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    CONNECTION_FIELD_NUMBER: _ClassVar[int]
    REGISTRATION_FIELD_NUMBER: _ClassVar[int]
    PREMISES_FIELD_NUMBER: _ClassVar[int]
    APPLICANT_FIELD_NUMBER: _ClassVar[int]
    correlation_id: str
    connection: ConnectionCheck
    registration: RegistrationCheck
    premises: PremisesCheck
    applicant: ApplicantCheck
    def __init__(self, correlation_id: _Optional[str] = ..., connection: _Optional[_Union[ConnectionCheck, _Mapping]] = ..., registration: _Optional[_Union[RegistrationCheck, _Mapping]] = ..., premises: _Optional[_Union[PremisesCheck, _Mapping]] = ..., applicant: _Optional[_Union[ApplicantCheck, _Mapping]] = ...) -> None: ...

class CheckBatch(_message.Message):
    __slots__ = ("checks",)
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    checks: _containers.RepeatedCompositeFieldContainer[Check]
    def __init__(self, checks: _Optional[_Iterable[_Union[Check, _Mapping]]] = ...) -> None: ...

class Reason(_message.Message):
    __slots__ = ("code", "permit_kind", "case_id", "article", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    PERMIT_KIND_FIELD_NUMBER: _ClassVar[int]
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    ARTICLE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: ReasonCode
    permit_kind: PermitKind
    case_id: str
    article: int
    message: str
    def __init__(self, code: _Optional[_Union[ReasonCode, str]] = ..., permit_kind: _Optional[_Union[PermitKind, str]] = ..., case_id: _Optional[str] = ..., article: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("verdict", "reasons", "valid_until", "notification_id", "registry_version", "decision_id", "correlation_id", "receipt", "decided_at", "error")
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_FIELD_NUMBER: _ClassVar[int]
    NOTIFICATION_ID_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_VERSION_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    verdict: Verdict
    reasons: _containers.RepeatedCompositeFieldContainer[Reason]
    valid_until: _timestamp_pb2.Timestamp
    notification_id: str
    registry_version: int
    decision_id: str
    correlation_id: str
    receipt: bytes
    decided_at: _timestamp_pb2.Timestamp
    error: str
    def __init__(self, verdict: _Optional[_Union[Verdict, str]] = ..., reasons: _Optional[_Iterable[_Union[Reason, _Mapping]]] = ..., valid_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., notification_id: _Optional[str] = ..., registry_version: _Optional[int] = ..., decision_id: _Optional[str] = ..., correlation_id: _Optional[str] = ..., receipt: _Optional[bytes] = ..., decided_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., error: _Optional[str] = ...) -> None: ...

class DecisionBatch(_message.Message):
    __slots__ = ("decisions",)
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    decisions: _containers.RepeatedCompositeFieldContainer[Decision]
    def __init__(self, decisions: _Optional[_Iterable[_Union[Decision, _Mapping]]] = ...) -> None: ...

class GetKeysRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class KeySet(_message.Message):
    __slots__ = ("verifier_keys", "registry_key", "gate_key", "checkpoint")
    VERIFIER_KEYS_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_KEY_FIELD_NUMBER: _ClassVar[int]
    GATE_KEY_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    verifier_keys: _containers.RepeatedScalarFieldContainer[str]
    registry_key: str
    gate_key: str
    checkpoint: bytes
    def __init__(self, verifier_keys: _Optional[_Iterable[str]] = ..., registry_key: _Optional[str] = ..., gate_key: _Optional[str] = ..., checkpoint: _Optional[bytes] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("structure_ids", "district", "all_structures", "question", "after_version", "after_time")
    STRUCTURE_IDS_FIELD_NUMBER: _ClassVar[int]
    DISTRICT_FIELD_NUMBER: _ClassVar[int]
    ALL_STRUCTURES_FIELD_NUMBER: _ClassVar[int]
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    AFTER_VERSION_FIELD_NUMBER: _ClassVar[int]
    AFTER_TIME_FIELD_NUMBER: _ClassVar[int]
    structure_ids: _containers.RepeatedScalarFieldContainer[str]
    district: str
    all_structures: bool
    question: Check
    after_version: int
    after_time: _timestamp_pb2.Timestamp
    def __init__(self, structure_ids: _Optional[_Iterable[str]] = ..., district: _Optional[str] = ..., all_structures: _Optional[bool] = ..., question: _Optional[_Union[Check, _Mapping]] = ..., after_version: _Optional[int] = ..., after_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class StatusChange(_message.Message):
    __slots__ = ("structure_id", "decision", "registry_version", "at", "cause")
    STRUCTURE_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_VERSION_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    CAUSE_FIELD_NUMBER: _ClassVar[int]
    structure_id: str
    decision: Decision
    registry_version: int
    at: _timestamp_pb2.Timestamp
    cause: ChangeCause
    def __init__(self, structure_id: _Optional[str] = ..., decision: _Optional[_Union[Decision, _Mapping]] = ..., registry_version: _Optional[int] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cause: _Optional[_Union[ChangeCause, str]] = ...) -> None: ...
