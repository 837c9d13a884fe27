import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetHeadRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Head(_message.Message):
    __slots__ = ("note",)
    NOTE_FIELD_NUMBER: _ClassVar[int]
    note: bytes
    def __init__(self, note: _Optional[bytes] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ("structure_id",)
    STRUCTURE_ID_FIELD_NUMBER: _ClassVar[int]
    structure_id: str
    def __init__(self, structure_id: _Optional[str] = ...) -> None: ...

class Status(_message.Message):
    __slots__ = ("head", "envelope", "map_proof")
    HEAD_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    MAP_PROOF_FIELD_NUMBER: _ClassVar[int]
    head: bytes
    envelope: bytes
    map_proof: bytes
    def __init__(self, head: _Optional[bytes] = ..., envelope: _Optional[bytes] = ..., map_proof: _Optional[bytes] = ...) -> None: ...

class GetConsistencyRequest(_message.Message):
    __slots__ = ("from_size", "to_size")
    FROM_SIZE_FIELD_NUMBER: _ClassVar[int]
    TO_SIZE_FIELD_NUMBER: _ClassVar[int]
    from_size: int
    to_size: int
    def __init__(self, from_size: _Optional[int] = ..., to_size: _Optional[int] = ...) -> None: ...

class Consistency(_message.Message):
    __slots__ = ("hashes",)
    HASHES_FIELD_NUMBER: _ClassVar[int]
    hashes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, hashes: _Optional[_Iterable[bytes]] = ...) -> None: ...

class SignedWrite(_message.Message):
    __slots__ = ("statement",)
    STATEMENT_FIELD_NUMBER: _ClassVar[int]
    statement: bytes
    def __init__(self, statement: _Optional[bytes] = ...) -> None: ...

class WriteResult(_message.Message):
    __slots__ = ("department", "request_id", "action", "seq", "registry_version", "replayed", "written_at", "permit", "case", "referral", "notice")
    DEPARTMENT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_VERSION_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    WRITTEN_AT_FIELD_NUMBER: _ClassVar[int]
    PERMIT_FIELD_NUMBER: _ClassVar[int]
    CASE_FIELD_NUMBER: _ClassVar[int]
    REFERRAL_FIELD_NUMBER: _ClassVar[int]
    NOTICE_FIELD_NUMBER: _ClassVar[int]
    department: str
    request_id: str
    action: str
    seq: int
    registry_version: int
    replayed: bool
    written_at: _timestamp_pb2.Timestamp
    permit: PermitInfo
    case: CaseInfo
    referral: Referral
    notice: Notice
    def __init__(self, department: _Optional[str] = ..., request_id: _Optional[str] = ..., action: _Optional[str] = ..., seq: _Optional[int] = ..., registry_version: _Optional[int] = ..., replayed: _Optional[bool] = ..., written_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., permit: _Optional[_Union[PermitInfo, _Mapping]] = ..., case: _Optional[_Union[CaseInfo, _Mapping]] = ..., referral: _Optional[_Union[Referral, _Mapping]] = ..., notice: _Optional[_Union[Notice, _Mapping]] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "structure_id", "district", "state", "department", "office", "kind", "min_age_days", "max_age_days", "overdue_only", "party")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STRUCTURE_ID_FIELD_NUMBER: _ClassVar[int]
    DISTRICT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DEPARTMENT_FIELD_NUMBER: _ClassVar[int]
    OFFICE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MIN_AGE_DAYS_FIELD_NUMBER: _ClassVar[int]
    MAX_AGE_DAYS_FIELD_NUMBER: _ClassVar[int]
    OVERDUE_ONLY_FIELD_NUMBER: _ClassVar[int]
    PARTY_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    structure_id: str
    district: str
    state: str
    department: str
    office: str
    kind: str
    min_age_days: int
    max_age_days: int
    overdue_only: bool
    party: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., structure_id: _Optional[str] = ..., district: _Optional[str] = ..., state: _Optional[str] = ..., department: _Optional[str] = ..., office: _Optional[str] = ..., kind: _Optional[str] = ..., min_age_days: _Optional[int] = ..., max_age_days: _Optional[int] = ..., overdue_only: _Optional[bool] = ..., party: _Optional[str] = ...) -> None: ...

class PermitInfo(_message.Message):
    __slots__ = ("id", "structure_id", "kind", "status", "issued", "expires", "use")
    ID_FIELD_NUMBER: _ClassVar[int]
    STRUCTURE_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ISSUED_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    USE_FIELD_NUMBER: _ClassVar[int]
    id: str
    structure_id: str
    kind: str
    status: str
    issued: _timestamp_pb2.Timestamp
    expires: _timestamp_pb2.Timestamp
    use: str
    def __init__(self, id: _Optional[str] = ..., structure_id: _Optional[str] = ..., kind: _Optional[str] = ..., status: _Optional[str] = ..., issued: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., use: _Optional[str] = ...) -> None: ...

class PermitPage(_message.Message):
    __slots__ = ("permits", "next_page_token")
    PERMITS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    permits: _containers.RepeatedCompositeFieldContainer[PermitInfo]
    next_page_token: str
    def __init__(self, permits: _Optional[_Iterable[_Union[PermitInfo, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CaseInfo(_message.Message):
    __slots__ = ("id", "structure_id", "kind", "stage", "source", "opened", "party", "party_suspended", "decider", "lead", "district", "blocking")
    ID_FIELD_NUMBER: _ClassVar[int]
    STRUCTURE_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    OPENED_FIELD_NUMBER: _ClassVar[int]
    PARTY_FIELD_NUMBER: _ClassVar[int]
    PARTY_SUSPENDED_FIELD_NUMBER: _ClassVar[int]
    DECIDER_FIELD_NUMBER: _ClassVar[int]
    LEAD_FIELD_NUMBER: _ClassVar[int]
    DISTRICT_FIELD_NUMBER: _ClassVar[int]
    BLOCKING_FIELD_NUMBER: _ClassVar[int]
    id: str
    structure_id: str
    kind: str
    stage: str
    source: str
    opened: _timestamp_pb2.Timestamp
    party: str
    party_suspended: bool
    decider: str
    lead: str
    district: str
    blocking: bool
    def __init__(self, id: _Optional[str] = ..., structure_id: _Optional[str] = ..., kind: _Optional[str] = ..., stage: _Optional[str] = ..., source: _Optional[str] = ..., opened: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., party: _Optional[str] = ..., party_suspended: _Optional[bool] = ..., decider: _Optional[str] = ..., lead: _Optional[str] = ..., district: _Optional[str] = ..., blocking: _Optional[bool] = ...) -> None: ...

class CasePage(_message.Message):
    __slots__ = ("cases", "next_page_token")
    CASES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    cases: _containers.RepeatedCompositeFieldContainer[CaseInfo]
    next_page_token: str
    def __init__(self, cases: _Optional[_Iterable[_Union[CaseInfo, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Referral(_message.Message):
    __slots__ = ("case_id", "structure_id", "district", "case_kind", "found_by", "found_at", "referral_due", "referred_to", "referred_at", "decided_at", "decision", "answer_due", "answered_at", "answer", "state", "overdue")
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    STRUCTURE_ID_FIELD_NUMBER: _ClassVar[int]
    DISTRICT_FIELD_NUMBER: _ClassVar[int]
    CASE_KIND_FIELD_NUMBER: _ClassVar[int]
    FOUND_BY_FIELD_NUMBER: _ClassVar[int]
    FOUND_AT_FIELD_NUMBER: _ClassVar[int]
    REFERRAL_DUE_FIELD_NUMBER: _ClassVar[int]
    REFERRED_TO_FIELD_NUMBER: _ClassVar[int]
    REFERRED_AT_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    ANSWER_DUE_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_AT_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    OVERDUE_FIELD_NUMBER: _ClassVar[int]
    case_id: str
    structure_id: str
    district: str
    case_kind: str
    found_by: str
    found_at: _timestamp_pb2.Timestamp
    referral_due: _timestamp_pb2.Timestamp
    referred_to: str
    referred_at: _timestamp_pb2.Timestamp
    decided_at: _timestamp_pb2.Timestamp
    decision: str
    answer_due: _timestamp_pb2.Timestamp
    answered_at: _timestamp_pb2.Timestamp
    answer: str
    state: str
    overdue: str
    def __init__(self, case_id: _Optional[str] = ..., structure_id: _Optional[str] = ..., district: _Optional[str] = ..., case_kind: _Optional[str] = ..., found_by: _Optional[str] = ..., found_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., referral_due: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., referred_to: _Optional[str] = ..., referred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., decided_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., decision: _Optional[str] = ..., answer_due: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., answered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., answer: _Optional[str] = ..., state: _Optional[str] = ..., overdue: _Optional[str] = ...) -> None: ...

class ReferralPage(_message.Message):
    __slots__ = ("referrals", "next_page_token")
    REFERRALS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    referrals: _containers.RepeatedCompositeFieldContainer[Referral]
    next_page_token: str
    def __init__(self, referrals: _Optional[_Iterable[_Union[Referral, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Notice(_message.Message):
    __slots__ = ("id", "structure_id", "district", "office", "application_id", "reasons", "created_at", "acknowledged_at", "acknowledged_by", "state")
    ID_FIELD_NUMBER: _ClassVar[int]
    STRUCTURE_ID_FIELD_NUMBER: _ClassVar[int]
    DISTRICT_FIELD_NUMBER: _ClassVar[int]
    OFFICE_FIELD_NUMBER: _ClassVar[int]
    APPLICATION_ID_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_AT_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_BY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    id: str
    structure_id: str
    district: str
    office: str
    application_id: str
    reasons: _containers.RepeatedScalarFieldContainer[str]
    created_at: _timestamp_pb2.Timestamp
    acknowledged_at: _timestamp_pb2.Timestamp
    acknowledged_by: str
    state: str
    def __init__(self, id: _Optional[str] = ..., structure_id: _Optional[str] = ..., district: _Optional[str] = ..., office: _Optional[str] = ..., application_id: _Optional[str] = ..., reasons: _Optional[_Iterable[str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., acknowledged_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., acknowledged_by: _Optional[str] = ..., state: _Optional[str] = ...) -> None: ...

class NoticePage(_message.Message):
    __slots__ = ("notices", "next_page_token")
    NOTICES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    notices: _containers.RepeatedCompositeFieldContainer[Notice]
    next_page_token: str
    def __init__(self, notices: _Optional[_Iterable[_Union[Notice, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Party(_message.Message):
    __slots__ = ("id", "suspended", "cases", "suspending_cases")
    ID_FIELD_NUMBER: _ClassVar[int]
    SUSPENDED_FIELD_NUMBER: _ClassVar[int]
    CASES_FIELD_NUMBER: _ClassVar[int]
    SUSPENDING_CASES_FIELD_NUMBER: _ClassVar[int]
    id: str
    suspended: bool
    cases: _containers.RepeatedScalarFieldContainer[str]
    suspending_cases: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., suspended: _Optional[bool] = ..., cases: _Optional[_Iterable[str]] = ..., suspending_cases: _Optional[_Iterable[str]] = ...) -> None: ...

class PartyPage(_message.Message):
    __slots__ = ("parties", "next_page_token")
    PARTIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parties: _containers.RepeatedCompositeFieldContainer[Party]
    next_page_token: str
    def __init__(self, parties: _Optional[_Iterable[_Union[Party, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ReportRequest(_message.Message):
    __slots__ = ("month", "district")
    MONTH_FIELD_NUMBER: _ClassVar[int]
    DISTRICT_FIELD_NUMBER: _ClassVar[int]
    month: str
    district: str
    def __init__(self, month: _Optional[str] = ..., district: _Optional[str] = ...) -> None: ...

class MonthlyReport(_message.Message):
    __slots__ = ("month", "district", "figures")
    MONTH_FIELD_NUMBER: _ClassVar[int]
    DISTRICT_FIELD_NUMBER: _ClassVar[int]
    FIGURES_FIELD_NUMBER: _ClassVar[int]
    month: str
    district: str
    figures: _containers.RepeatedCompositeFieldContainer[ReportFigure]
    def __init__(self, month: _Optional[str] = ..., district: _Optional[str] = ..., figures: _Optional[_Iterable[_Union[ReportFigure, _Mapping]]] = ...) -> None: ...

class ReportFigure(_message.Message):
    __slots__ = ("section", "key", "value")
    SECTION_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    section: str
    key: str
    value: int
    def __init__(self, section: _Optional[str] = ..., key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
