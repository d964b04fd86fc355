"""What goes in and out of the REST API: ``XCreate`` / ``XUpdate`` / ``XRead``.

Input models forbid unknown fields, so nobody sets ``status`` or ``assignee``
through a field they were not offered. Ids are bounded to the database's integer
range; lengths follow the columns. The service layer checks the rest and names the
field that is wrong.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

T = TypeVar("T")

MAX_ID = 2**31 - 1
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Amount = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]
JsonObject = dict[str, Any]


def _in_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range") from None


#: a moment with a time zone (stored in UTC)
Moment = Annotated[AwareDatetime, AfterValidator(_in_utc)]


class In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(Out, Generic[T]):
    """A page of a list; pass ``next_cursor`` as ``cursor`` for the next one."""

    items: list[T]
    next_cursor: str | None = None


class Ref(Out):
    id: int
    name: str


# -- departments -------------------------------------------------------------------------


class DepartmentCreate(In):
    name: str = Field(min_length=1, max_length=100)
    email: str | None = Field(None, max_length=254, description="where department alerts go")
    notify: bool = True


class DepartmentUpdate(In):
    name: str | None = Field(None, min_length=1, max_length=100)
    email: str | None = Field(None, max_length=254, description="where department alerts go; null clears it")
    notify: bool | None = None


class DepartmentRead(Out):
    id: int
    name: str
    email: str | None
    notify: bool
    created_at: datetime


# -- staff ----------------------------------------------------------------------------------


class StaffCreate(In):
    login: str = Field(min_length=1, max_length=100)
    name: str = Field("", max_length=200)
    email: str | None = Field(None, max_length=254)
    department_ids: list[Id] = Field(default_factory=list, max_length=100)
    is_admin: bool = False
    password: str | None = Field(None, max_length=1000, description="for the web UI; at least 8 characters")


class StaffRead(Out):
    id: int
    login: str
    name: str
    email: str | None
    is_admin: bool
    active: bool
    department_ids: list[int]
    created_at: datetime


class StaffCreated(StaffRead):
    token: str = Field(description="the new member's API token: shown this once, never again")


# -- installed module plugins ----------------------------------------------------------------


class AddonSpecRead(Out):
    name: str
    title: str
    unit: str


class RetryRead(Out):
    max_attempts: int
    base_delay: float
    max_delay: float


class ModuleRead(Out):
    name: str
    title: str
    description: str
    operations: list[str]
    settings_schema: JsonObject
    params_schema: JsonObject
    addons: list[AddonSpecRead]
    retry: RetryRead
    timeout: float
    origin: str


class LoadError(Out):
    name: str
    reason: str


class ModulesPage(Page[ModuleRead]):
    load_errors: list[LoadError]


# -- processing modules ------------------------------------------------------------------------


class ProcessingModuleCreate(In):
    name: str = Field(min_length=1, max_length=100)
    module: str = Field(min_length=1, max_length=100, description="the module plugin (entry-point name)")
    department_id: Id = Field(description="the responsible department: it gets the tasks")
    settings: JsonObject = Field(default_factory=dict)
    enabled: bool = True


class ProcessingModuleUpdate(In):
    name: str | None = Field(None, min_length=1, max_length=100)
    department_id: Id | None = None
    settings: JsonObject | None = Field(None, description="secrets sent back masked keep their value")
    enabled: bool | None = None


class ProcessingModuleRead(Out):
    id: int
    name: str
    module: str
    installed: bool
    department: Ref
    settings: JsonObject = Field(description="secrets masked")
    enabled: bool
    created_at: datetime


class CheckConnectionRead(Out):
    ok: bool
    message: str


# -- tariff plans -----------------------------------------------------------------------------


class AddonDefinition(In):
    unit: str = Field("", max_length=50)
    title: str | None = Field(None, max_length=200)
    min: Amount = 0
    max: Amount | None = None
    default: Amount | None = None


AddonName = Annotated[str, Field(max_length=50)]


class TariffCreate(In):
    name: str = Field(min_length=1, max_length=200)
    service_type: str = Field(min_length=1, max_length=50)
    processing_module_id: Id
    default_params: JsonObject = Field(default_factory=dict)
    addons: dict[AddonName, AddonDefinition] = Field(default_factory=dict)


class TariffUpdate(In):
    name: str | None = Field(None, min_length=1, max_length=200)
    service_type: str | None = Field(None, min_length=1, max_length=50)
    processing_module_id: Id | None = None
    default_params: JsonObject | None = None
    addons: dict[AddonName, AddonDefinition] | None = None


class TariffRead(Out):
    id: int
    name: str
    service_type: str
    processing_module_id: int
    default_params: JsonObject = Field(description="secrets masked")
    addons: JsonObject
    created_at: datetime


# -- clients ------------------------------------------------------------------------------------


class ClientCreate(In):
    name: str = Field(min_length=1, max_length=200)
    email: str = Field(max_length=254)
    language: str = Field("en", max_length=8)


class ClientRead(Out):
    id: int
    name: str
    email: str
    language: str
    created_at: datetime


# -- services -----------------------------------------------------------------------------------


class ServiceCreate(In):
    client_id: Id
    tariff_id: Id
    params: JsonObject = Field(default_factory=dict, description="main settings; the tariff's defaults fill the rest")
    addons: dict[AddonName, Amount] = Field(default_factory=dict)
    expires_at: Moment | None = Field(None, description="with a time zone, e.g. 2027-01-01T00:00:00Z")


class ServiceUpdate(In):
    params: JsonObject | None = None
    addons: dict[AddonName, Amount] | None = None
    tariff_id: Id | None = None
    expires_at: Moment | None = Field(None, description="with a time zone, e.g. 2027-01-01T00:00:00Z")


class OperationRead(Out):
    id: int
    kind: str
    state: str
    attempts: int
    last_error: str | None
    run_after: datetime
    created_at: datetime


class HistoryRead(Out):
    id: int
    created_at: datetime
    event: str
    message: str
    detail: str | None = Field(description="internal detail for staff, e.g. a module's traceback")
    actor: str
    task_id: int | None
    operation_id: int | None


class TariffRef(Out):
    id: int
    name: str
    service_type: str


class ServiceRead(Out):
    id: int
    client: Ref
    tariff: TariffRef
    status: str
    target_status: str = Field(description="the status once every queued operation is done")
    params: JsonObject = Field(description="main settings, secrets masked")
    addons: JsonObject
    remote_id: str | None
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    version: int
    pending_operation: OperationRead | None = None


class ServiceDetail(ServiceRead):
    history: list[HistoryRead]


# -- tasks ----------------------------------------------------------------------------------------

TaskStatusFilter = Literal["new", "in_progress", "closed", "open"]
TaskType = Literal["setup", "change", "delete", "suspend", "resume"]


class StaffRef(Out):
    id: int
    login: str
    name: str


class TaskRead(Out):
    id: int
    type: str
    status: str
    title: str
    department: Ref
    assignee: StaffRef | None
    service_id: int
    created_at: datetime
    assigned_at: datetime | None
    closed_at: datetime | None
    error: str | None = Field(description="the module's error, when the task came from a failure")
    retryable: bool
    version: int


class TaskGeneral(Out):
    id: int
    type: str
    status: str
    title: str
    activation_date: datetime
    department: Ref
    assignee: StaffRef | None
    description: str
    close_actions: str
    error: str | None
    retryable: bool
    service_description: str
    service_id: int
    client: Ref
    closed_at: datetime | None
    history: list[HistoryRead]


class TaskDetail(Out):
    """The task form: general information, main settings, add-ons."""

    general: TaskGeneral
    main_settings: JsonObject = Field(description="secrets masked unless reveal_secrets=true")
    main_settings_schema: JsonObject | None
    addons: JsonObject
    addons_editable: bool
    addons_reason: str | None


class TaskUpdate(In):
    main_settings: JsonObject | None = None
    addons: dict[AddonName, Amount] | None = Field(None, description="change tasks only")


class TaskTransfer(In):
    department_id: Id


class CommentCreate(In):
    text: str = Field(min_length=1, max_length=10_000)


# -- pool resources ----------------------------------------------------------------------------


class ResourceRead(Out):
    """A taken resource of a module's pool: in use by a service, or waiting for staff
    (``needs_wipe``) before it can be allocated again."""

    pool: str
    name: str
    state: str
    service_id: int | None
    claimed_at: datetime


class ResourceFree(In):
    pool: str = Field(min_length=1, max_length=100)
    name: str = Field(min_length=1, max_length=200)
