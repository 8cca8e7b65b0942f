from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateClusterSetResponse(_message.Message):
    __slots__ = ("cluster_set",)
    CLUSTER_SET_FIELD_NUMBER: _ClassVar[int]
    cluster_set: ClusterSet
    def __init__(self, cluster_set: _Optional[_Union[ClusterSet, _Mapping]] = ...) -> None: ...

class ClusterSet(_message.Message):
    __slots__ = ("name", "selector", "clusters", "created_by", "created_unix", "managed_by")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    MANAGED_BY_FIELD_NUMBER: _ClassVar[int]
    name: str
    selector: str
    clusters: _containers.RepeatedScalarFieldContainer[str]
    created_by: str
    created_unix: int
    managed_by: str
    def __init__(self, name: _Optional[str] = ..., selector: _Optional[str] = ..., clusters: _Optional[_Iterable[str]] = ..., created_by: _Optional[str] = ..., created_unix: _Optional[int] = ..., managed_by: _Optional[str] = ...) -> None: ...

class CreateClusterSetRequest(_message.Message):
    __slots__ = ("name", "selector", "managed_by")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    MANAGED_BY_FIELD_NUMBER: _ClassVar[int]
    name: str
    selector: str
    managed_by: str
    def __init__(self, name: _Optional[str] = ..., selector: _Optional[str] = ..., managed_by: _Optional[str] = ...) -> None: ...

class UpdateClusterSetRequest(_message.Message):
    __slots__ = ("name", "selector")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    name: str
    selector: str
    def __init__(self, name: _Optional[str] = ..., selector: _Optional[str] = ...) -> None: ...

class UpdateClusterSetResponse(_message.Message):
    __slots__ = ("cluster_set",)
    CLUSTER_SET_FIELD_NUMBER: _ClassVar[int]
    cluster_set: ClusterSet
    def __init__(self, cluster_set: _Optional[_Union[ClusterSet, _Mapping]] = ...) -> None: ...

class ListClusterSetsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListClusterSetsResponse(_message.Message):
    __slots__ = ("cluster_sets",)
    CLUSTER_SETS_FIELD_NUMBER: _ClassVar[int]
    cluster_sets: _containers.RepeatedCompositeFieldContainer[ClusterSet]
    def __init__(self, cluster_sets: _Optional[_Iterable[_Union[ClusterSet, _Mapping]]] = ...) -> None: ...

class DeleteClusterSetRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteClusterSetResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Grant(_message.Message):
    __slots__ = ("cluster_set", "role", "cluster_scoped")
    CLUSTER_SET_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_SCOPED_FIELD_NUMBER: _ClassVar[int]
    cluster_set: str
    role: str
    cluster_scoped: bool
    def __init__(self, cluster_set: _Optional[str] = ..., role: _Optional[str] = ..., cluster_scoped: _Optional[bool] = ...) -> None: ...

class CreateTeamResponse(_message.Message):
    __slots__ = ("team",)
    TEAM_FIELD_NUMBER: _ClassVar[int]
    team: Team
    def __init__(self, team: _Optional[_Union[Team, _Mapping]] = ...) -> None: ...

class UpdateTeamResponse(_message.Message):
    __slots__ = ("team",)
    TEAM_FIELD_NUMBER: _ClassVar[int]
    team: Team
    def __init__(self, team: _Optional[_Union[Team, _Mapping]] = ...) -> None: ...

class Team(_message.Message):
    __slots__ = ("name", "members", "namespaces", "grants", "created_by", "created_unix")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    name: str
    members: _containers.RepeatedScalarFieldContainer[str]
    namespaces: _containers.RepeatedScalarFieldContainer[str]
    grants: _containers.RepeatedCompositeFieldContainer[Grant]
    created_by: str
    created_unix: int
    def __init__(self, name: _Optional[str] = ..., members: _Optional[_Iterable[str]] = ..., namespaces: _Optional[_Iterable[str]] = ..., grants: _Optional[_Iterable[_Union[Grant, _Mapping]]] = ..., created_by: _Optional[str] = ..., created_unix: _Optional[int] = ...) -> None: ...

class CreateTeamRequest(_message.Message):
    __slots__ = ("name", "namespaces")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    name: str
    namespaces: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., namespaces: _Optional[_Iterable[str]] = ...) -> None: ...

class UpdateTeamRequest(_message.Message):
    __slots__ = ("name", "add_members", "remove_members", "add_namespaces", "remove_namespaces", "add_grants", "remove_grants")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADD_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    REMOVE_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    ADD_NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    REMOVE_NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    ADD_GRANTS_FIELD_NUMBER: _ClassVar[int]
    REMOVE_GRANTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    add_members: _containers.RepeatedScalarFieldContainer[str]
    remove_members: _containers.RepeatedScalarFieldContainer[str]
    add_namespaces: _containers.RepeatedScalarFieldContainer[str]
    remove_namespaces: _containers.RepeatedScalarFieldContainer[str]
    add_grants: _containers.RepeatedCompositeFieldContainer[Grant]
    remove_grants: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., add_members: _Optional[_Iterable[str]] = ..., remove_members: _Optional[_Iterable[str]] = ..., add_namespaces: _Optional[_Iterable[str]] = ..., remove_namespaces: _Optional[_Iterable[str]] = ..., add_grants: _Optional[_Iterable[_Union[Grant, _Mapping]]] = ..., remove_grants: _Optional[_Iterable[str]] = ...) -> None: ...

class ListTeamsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTeamsResponse(_message.Message):
    __slots__ = ("teams",)
    TEAMS_FIELD_NUMBER: _ClassVar[int]
    teams: _containers.RepeatedCompositeFieldContainer[Team]
    def __init__(self, teams: _Optional[_Iterable[_Union[Team, _Mapping]]] = ...) -> None: ...

class DeleteTeamRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteTeamResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class BackupRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class BackupResponse(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class CreateUserRequest(_message.Message):
    __slots__ = ("name", "role", "csr_der", "ttl_seconds")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CSR_DER_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    role: str
    csr_der: bytes
    ttl_seconds: int
    def __init__(self, name: _Optional[str] = ..., role: _Optional[str] = ..., csr_der: _Optional[bytes] = ..., ttl_seconds: _Optional[int] = ...) -> None: ...

class CreateUserResponse(_message.Message):
    __slots__ = ("cert_pem", "ca_pem", "not_after_unix", "hub_address")
    CERT_PEM_FIELD_NUMBER: _ClassVar[int]
    CA_PEM_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_UNIX_FIELD_NUMBER: _ClassVar[int]
    HUB_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    cert_pem: str
    ca_pem: str
    not_after_unix: int
    hub_address: str
    def __init__(self, cert_pem: _Optional[str] = ..., ca_pem: _Optional[str] = ..., not_after_unix: _Optional[int] = ..., hub_address: _Optional[str] = ...) -> None: ...

class User(_message.Message):
    __slots__ = ("name", "role", "created_unix", "cert_not_after_unix")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    CERT_NOT_AFTER_UNIX_FIELD_NUMBER: _ClassVar[int]
    name: str
    role: str
    created_unix: int
    cert_not_after_unix: int
    def __init__(self, name: _Optional[str] = ..., role: _Optional[str] = ..., created_unix: _Optional[int] = ..., cert_not_after_unix: _Optional[int] = ...) -> None: ...

class ListUsersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListUsersResponse(_message.Message):
    __slots__ = ("users",)
    USERS_FIELD_NUMBER: _ClassVar[int]
    users: _containers.RepeatedCompositeFieldContainer[User]
    def __init__(self, users: _Optional[_Iterable[_Union[User, _Mapping]]] = ...) -> None: ...

class RemoveUserRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RemoveUserResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAuditRequest(_message.Message):
    __slots__ = ("since_unix_ms", "limit")
    SINCE_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    since_unix_ms: int
    limit: int
    def __init__(self, since_unix_ms: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class AuditEntry(_message.Message):
    __slots__ = ("unix_ms", "actor", "action", "target", "result", "source")
    UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    unix_ms: int
    actor: str
    action: str
    target: str
    result: str
    source: str
    def __init__(self, unix_ms: _Optional[int] = ..., actor: _Optional[str] = ..., action: _Optional[str] = ..., target: _Optional[str] = ..., result: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...

class ListAuditResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[AuditEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[AuditEntry, _Mapping]]] = ...) -> None: ...

class ApplyWorkloadRequest(_message.Message):
    __slots__ = ("workload_json", "team")
    WORKLOAD_JSON_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    workload_json: str
    team: str
    def __init__(self, workload_json: _Optional[str] = ..., team: _Optional[str] = ...) -> None: ...

class ApplyWorkloadResponse(_message.Message):
    __slots__ = ("name", "revision", "changed", "clusters")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    revision: int
    changed: bool
    clusters: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., revision: _Optional[int] = ..., changed: _Optional[bool] = ..., clusters: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteWorkloadRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteWorkloadResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetWorkloadRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetWorkloadResponse(_message.Message):
    __slots__ = ("workload",)
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    workload: WorkloadInfo
    def __init__(self, workload: _Optional[_Union[WorkloadInfo, _Mapping]] = ...) -> None: ...

class WorkloadInfo(_message.Message):
    __slots__ = ("name", "workload_json", "revision", "created_unix", "updated_unix", "deleting", "clusters", "team")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_JSON_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    UPDATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    DELETING_FIELD_NUMBER: _ClassVar[int]
    CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    name: str
    workload_json: str
    revision: int
    created_unix: int
    updated_unix: int
    deleting: bool
    clusters: _containers.RepeatedScalarFieldContainer[str]
    team: str
    def __init__(self, name: _Optional[str] = ..., workload_json: _Optional[str] = ..., revision: _Optional[int] = ..., created_unix: _Optional[int] = ..., updated_unix: _Optional[int] = ..., deleting: _Optional[bool] = ..., clusters: _Optional[_Iterable[str]] = ..., team: _Optional[str] = ...) -> None: ...

class ListWorkloadsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListWorkloadsResponse(_message.Message):
    __slots__ = ("workloads",)
    WORKLOADS_FIELD_NUMBER: _ClassVar[int]
    workloads: _containers.RepeatedCompositeFieldContainer[WorkloadSummary]
    def __init__(self, workloads: _Optional[_Iterable[_Union[WorkloadSummary, _Mapping]]] = ...) -> None: ...

class WorkloadSummary(_message.Message):
    __slots__ = ("name", "revision", "clusters", "available", "progressing", "degraded", "stale", "pending", "deleting", "team")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    PROGRESSING_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    DELETING_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    name: str
    revision: int
    clusters: int
    available: int
    progressing: int
    degraded: int
    stale: int
    pending: int
    deleting: bool
    team: str
    def __init__(self, name: _Optional[str] = ..., revision: _Optional[int] = ..., clusters: _Optional[int] = ..., available: _Optional[int] = ..., progressing: _Optional[int] = ..., degraded: _Optional[int] = ..., stale: _Optional[int] = ..., pending: _Optional[int] = ..., deleting: _Optional[bool] = ..., team: _Optional[str] = ...) -> None: ...

class GetWorkloadStatusRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetWorkloadStatusResponse(_message.Message):
    __slots__ = ("name", "revision", "deleting", "clusters")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    DELETING_FIELD_NUMBER: _ClassVar[int]
    CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    revision: int
    deleting: bool
    clusters: _containers.RepeatedCompositeFieldContainer[ClusterWorkloadStatus]
    def __init__(self, name: _Optional[str] = ..., revision: _Optional[int] = ..., deleting: _Optional[bool] = ..., clusters: _Optional[_Iterable[_Union[ClusterWorkloadStatus, _Mapping]]] = ...) -> None: ...

class ClusterWorkloadStatus(_message.Message):
    __slots__ = ("cluster", "revision", "reported_revision", "phase", "message", "ready", "total", "feedback", "objects", "objects_total", "drift", "drift_corrections", "reported_unix", "stale", "cluster_status", "outdated")
    class FeedbackEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    REPORTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    DRIFT_FIELD_NUMBER: _ClassVar[int]
    DRIFT_CORRECTIONS_FIELD_NUMBER: _ClassVar[int]
    REPORTED_UNIX_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_STATUS_FIELD_NUMBER: _ClassVar[int]
    OUTDATED_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    revision: int
    reported_revision: int
    phase: str
    message: str
    ready: int
    total: int
    feedback: _containers.ScalarMap[str, str]
    objects: _containers.RepeatedCompositeFieldContainer[ObjectStatusView]
    objects_total: int
    drift: _containers.RepeatedCompositeFieldContainer[DriftView]
    drift_corrections: int
    reported_unix: int
    stale: bool
    cluster_status: str
    outdated: bool
    def __init__(self, cluster: _Optional[str] = ..., revision: _Optional[int] = ..., reported_revision: _Optional[int] = ..., phase: _Optional[str] = ..., message: _Optional[str] = ..., ready: _Optional[int] = ..., total: _Optional[int] = ..., feedback: _Optional[_Mapping[str, str]] = ..., objects: _Optional[_Iterable[_Union[ObjectStatusView, _Mapping]]] = ..., objects_total: _Optional[int] = ..., drift: _Optional[_Iterable[_Union[DriftView, _Mapping]]] = ..., drift_corrections: _Optional[int] = ..., reported_unix: _Optional[int] = ..., stale: _Optional[bool] = ..., cluster_status: _Optional[str] = ..., outdated: _Optional[bool] = ...) -> None: ...

class ObjectStatusView(_message.Message):
    __slots__ = ("api_version", "kind", "namespace", "name", "health", "message")
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    api_version: str
    kind: str
    namespace: str
    name: str
    health: str
    message: str
    def __init__(self, api_version: _Optional[str] = ..., kind: _Optional[str] = ..., namespace: _Optional[str] = ..., name: _Optional[str] = ..., health: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class DriftView(_message.Message):
    __slots__ = ("object", "field", "manager", "unix")
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    MANAGER_FIELD_NUMBER: _ClassVar[int]
    UNIX_FIELD_NUMBER: _ClassVar[int]
    object: str
    field: str
    manager: str
    unix: int
    def __init__(self, object: _Optional[str] = ..., field: _Optional[str] = ..., manager: _Optional[str] = ..., unix: _Optional[int] = ...) -> None: ...

class CreateTokenRequest(_message.Message):
    __slots__ = ("cluster", "labels", "ttl_seconds", "reusable", "allow_labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    REUSABLE_FIELD_NUMBER: _ClassVar[int]
    ALLOW_LABELS_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    labels: _containers.ScalarMap[str, str]
    ttl_seconds: int
    reusable: bool
    allow_labels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, cluster: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., ttl_seconds: _Optional[int] = ..., reusable: _Optional[bool] = ..., allow_labels: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateTokenResponse(_message.Message):
    __slots__ = ("token", "info", "ca_pin", "hub_address")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    CA_PIN_FIELD_NUMBER: _ClassVar[int]
    HUB_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    token: str
    info: Token
    ca_pin: str
    hub_address: str
    def __init__(self, token: _Optional[str] = ..., info: _Optional[_Union[Token, _Mapping]] = ..., ca_pin: _Optional[str] = ..., hub_address: _Optional[str] = ...) -> None: ...

class Token(_message.Message):
    __slots__ = ("id", "cluster", "labels", "created_unix", "expires_unix", "reusable", "uses", "revoked", "created_by", "allow_labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_UNIX_FIELD_NUMBER: _ClassVar[int]
    REUSABLE_FIELD_NUMBER: _ClassVar[int]
    USES_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    ALLOW_LABELS_FIELD_NUMBER: _ClassVar[int]
    id: str
    cluster: str
    labels: _containers.ScalarMap[str, str]
    created_unix: int
    expires_unix: int
    reusable: bool
    uses: int
    revoked: bool
    created_by: str
    allow_labels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., cluster: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., created_unix: _Optional[int] = ..., expires_unix: _Optional[int] = ..., reusable: _Optional[bool] = ..., uses: _Optional[int] = ..., revoked: _Optional[bool] = ..., created_by: _Optional[str] = ..., allow_labels: _Optional[_Iterable[str]] = ...) -> None: ...

class ListTokensRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTokensResponse(_message.Message):
    __slots__ = ("tokens",)
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedCompositeFieldContainer[Token]
    def __init__(self, tokens: _Optional[_Iterable[_Union[Token, _Mapping]]] = ...) -> None: ...

class RevokeTokenRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class RevokeTokenResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetClusterResponse(_message.Message):
    __slots__ = ("cluster",)
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    cluster: Cluster
    def __init__(self, cluster: _Optional[_Union[Cluster, _Mapping]] = ...) -> None: ...

class LabelClusterResponse(_message.Message):
    __slots__ = ("cluster",)
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    cluster: Cluster
    def __init__(self, cluster: _Optional[_Union[Cluster, _Mapping]] = ...) -> None: ...

class SetClusterResponse(_message.Message):
    __slots__ = ("cluster",)
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    cluster: Cluster
    def __init__(self, cluster: _Optional[_Union[Cluster, _Mapping]] = ...) -> None: ...

class Cluster(_message.Message):
    __slots__ = ("name", "labels", "status", "facts", "joined_unix", "last_seen_unix", "session_id", "peer_address", "cert_serial", "cert_not_after_unix", "cert_issuer", "impersonate", "cordoned", "taints")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FACTS_FIELD_NUMBER: _ClassVar[int]
    JOINED_UNIX_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_UNIX_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    PEER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CERT_SERIAL_FIELD_NUMBER: _ClassVar[int]
    CERT_NOT_AFTER_UNIX_FIELD_NUMBER: _ClassVar[int]
    CERT_ISSUER_FIELD_NUMBER: _ClassVar[int]
    IMPERSONATE_FIELD_NUMBER: _ClassVar[int]
    CORDONED_FIELD_NUMBER: _ClassVar[int]
    TAINTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    labels: _containers.ScalarMap[str, str]
    status: str
    facts: ClusterFactsView
    joined_unix: int
    last_seen_unix: int
    session_id: str
    peer_address: str
    cert_serial: str
    cert_not_after_unix: int
    cert_issuer: str
    impersonate: bool
    cordoned: bool
    taints: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., status: _Optional[str] = ..., facts: _Optional[_Union[ClusterFactsView, _Mapping]] = ..., joined_unix: _Optional[int] = ..., last_seen_unix: _Optional[int] = ..., session_id: _Optional[str] = ..., peer_address: _Optional[str] = ..., cert_serial: _Optional[str] = ..., cert_not_after_unix: _Optional[int] = ..., cert_issuer: _Optional[str] = ..., impersonate: _Optional[bool] = ..., cordoned: _Optional[bool] = ..., taints: _Optional[_Iterable[str]] = ...) -> None: ...

class SetClusterRequest(_message.Message):
    __slots__ = ("name", "impersonate", "cordoned", "add_taints", "remove_taints")
    NAME_FIELD_NUMBER: _ClassVar[int]
    IMPERSONATE_FIELD_NUMBER: _ClassVar[int]
    CORDONED_FIELD_NUMBER: _ClassVar[int]
    ADD_TAINTS_FIELD_NUMBER: _ClassVar[int]
    REMOVE_TAINTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    impersonate: bool
    cordoned: bool
    add_taints: _containers.RepeatedScalarFieldContainer[str]
    remove_taints: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., impersonate: _Optional[bool] = ..., cordoned: _Optional[bool] = ..., add_taints: _Optional[_Iterable[str]] = ..., remove_taints: _Optional[_Iterable[str]] = ...) -> None: ...

class ClusterFactsView(_message.Message):
    __slots__ = ("agent_version", "kubernetes_version", "node_count", "platform", "api_reachable", "api_error")
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    KUBERNETES_VERSION_FIELD_NUMBER: _ClassVar[int]
    NODE_COUNT_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    API_REACHABLE_FIELD_NUMBER: _ClassVar[int]
    API_ERROR_FIELD_NUMBER: _ClassVar[int]
    agent_version: str
    kubernetes_version: str
    node_count: int
    platform: str
    api_reachable: bool
    api_error: str
    def __init__(self, agent_version: _Optional[str] = ..., kubernetes_version: _Optional[str] = ..., node_count: _Optional[int] = ..., platform: _Optional[str] = ..., api_reachable: _Optional[bool] = ..., api_error: _Optional[str] = ...) -> None: ...

class ListClustersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListClustersResponse(_message.Message):
    __slots__ = ("clusters",)
    CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    clusters: _containers.RepeatedCompositeFieldContainer[Cluster]
    def __init__(self, clusters: _Optional[_Iterable[_Union[Cluster, _Mapping]]] = ...) -> None: ...

class GetClusterRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class LabelClusterRequest(_message.Message):
    __slots__ = ("name", "set", "remove", "overwrite")
    class SetEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    SET_FIELD_NUMBER: _ClassVar[int]
    REMOVE_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    name: str
    set: _containers.ScalarMap[str, str]
    remove: _containers.RepeatedScalarFieldContainer[str]
    overwrite: bool
    def __init__(self, name: _Optional[str] = ..., set: _Optional[_Mapping[str, str]] = ..., remove: _Optional[_Iterable[str]] = ..., overwrite: _Optional[bool] = ...) -> None: ...

class RemoveClusterRequest(_message.Message):
    __slots__ = ("name", "cleanup")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CLEANUP_FIELD_NUMBER: _ClassVar[int]
    name: str
    cleanup: bool
    def __init__(self, name: _Optional[str] = ..., cleanup: _Optional[bool] = ...) -> None: ...

class RemoveClusterResponse(_message.Message):
    __slots__ = ("removed", "remaining")
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    removed: bool
    remaining: int
    def __init__(self, removed: _Optional[bool] = ..., remaining: _Optional[int] = ...) -> None: ...

class WhoAmIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WhoAmIResponse(_message.Message):
    __slots__ = ("user", "role", "teams")
    USER_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TEAMS_FIELD_NUMBER: _ClassVar[int]
    user: str
    role: str
    teams: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, user: _Optional[str] = ..., role: _Optional[str] = ..., teams: _Optional[_Iterable[str]] = ...) -> None: ...

class GetRolloutRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetRolloutResponse(_message.Message):
    __slots__ = ("rollout",)
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    rollout: RolloutStatus
    def __init__(self, rollout: _Optional[_Union[RolloutStatus, _Mapping]] = ...) -> None: ...

class ControlRolloutRequest(_message.Message):
    __slots__ = ("name", "action", "to_revision")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TO_REVISION_FIELD_NUMBER: _ClassVar[int]
    name: str
    action: str
    to_revision: int
    def __init__(self, name: _Optional[str] = ..., action: _Optional[str] = ..., to_revision: _Optional[int] = ...) -> None: ...

class ControlRolloutResponse(_message.Message):
    __slots__ = ("rollout",)
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    rollout: RolloutStatus
    def __init__(self, rollout: _Optional[_Union[RolloutStatus, _Mapping]] = ...) -> None: ...

class GetRolloutHistoryRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RevisionEntry(_message.Message):
    __slots__ = ("revision", "unix", "by", "change")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    UNIX_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    revision: int
    unix: int
    by: str
    change: str
    def __init__(self, revision: _Optional[int] = ..., unix: _Optional[int] = ..., by: _Optional[str] = ..., change: _Optional[str] = ...) -> None: ...

class GetRolloutHistoryResponse(_message.Message):
    __slots__ = ("name", "revision", "revisions")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    REVISIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    revision: int
    revisions: _containers.RepeatedCompositeFieldContainer[RevisionEntry]
    def __init__(self, name: _Optional[str] = ..., revision: _Optional[int] = ..., revisions: _Optional[_Iterable[_Union[RevisionEntry, _Mapping]]] = ...) -> None: ...

class RolloutCluster(_message.Message):
    __slots__ = ("cluster", "revision", "updated", "available", "offline", "phase")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    OFFLINE_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    revision: int
    updated: bool
    available: bool
    offline: bool
    phase: str
    def __init__(self, cluster: _Optional[str] = ..., revision: _Optional[int] = ..., updated: _Optional[bool] = ..., available: _Optional[bool] = ..., offline: _Optional[bool] = ..., phase: _Optional[str] = ...) -> None: ...

class RolloutWave(_message.Message):
    __slots__ = ("selector", "clusters")
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    selector: str
    clusters: _containers.RepeatedCompositeFieldContainer[RolloutCluster]
    def __init__(self, selector: _Optional[str] = ..., clusters: _Optional[_Iterable[_Union[RolloutCluster, _Mapping]]] = ...) -> None: ...

class RolloutStatus(_message.Message):
    __slots__ = ("name", "revision", "state", "reason", "current_wave", "max_unavailable", "waves")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CURRENT_WAVE_FIELD_NUMBER: _ClassVar[int]
    MAX_UNAVAILABLE_FIELD_NUMBER: _ClassVar[int]
    WAVES_FIELD_NUMBER: _ClassVar[int]
    name: str
    revision: int
    state: str
    reason: str
    current_wave: int
    max_unavailable: int
    waves: _containers.RepeatedCompositeFieldContainer[RolloutWave]
    def __init__(self, name: _Optional[str] = ..., revision: _Optional[int] = ..., state: _Optional[str] = ..., reason: _Optional[str] = ..., current_wave: _Optional[int] = ..., max_unavailable: _Optional[int] = ..., waves: _Optional[_Iterable[_Union[RolloutWave, _Mapping]]] = ...) -> None: ...

class ListEventsRequest(_message.Message):
    __slots__ = ("since_unix_ms", "workload")
    SINCE_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    since_unix_ms: int
    workload: str
    def __init__(self, since_unix_ms: _Optional[int] = ..., workload: _Optional[str] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("unix_ms", "workload", "cluster", "reason", "message")
    UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    unix_ms: int
    workload: str
    cluster: str
    reason: str
    message: str
    def __init__(self, unix_ms: _Optional[int] = ..., workload: _Optional[str] = ..., cluster: _Optional[str] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ListEventsResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    def __init__(self, events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ...) -> None: ...
