"""The domain of DESIGN.md as SQLAlchemy 2 models. Only the service layer writes them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from fulfil.db import UTCDateTime, utcnow

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JSONType = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSONType}


# -- statuses ----------------------------------------------------------------------

SERVICE_STATUSES = ("ordered", "processing", "active", "suspended", "deleted")
OPERATION_KINDS = ("open", "edit", "close", "suspend", "resume")
#: pending: waits to run (run_after) · running: a worker holds the lease ·
#: waiting_task: a task is open for it · done / cancelled: finished
OPERATION_STATES = ("pending", "running", "waiting_task", "done", "cancelled")
UNFINISHED_OPERATION_STATES = ("pending", "running", "waiting_task")
TASK_TYPES = ("setup", "change", "delete", "suspend", "resume")
TASK_STATUSES = ("new", "in_progress", "closed")
TASK_TYPE_OF_OPERATION = {
    "open": "setup",
    "edit": "change",
    "close": "delete",
    "suspend": "suspend",
    "resume": "resume",
}


staff_departments = Table(
    "staff_departments",
    Base.metadata,
    Column("staff_id", ForeignKey("staff.id", ondelete="CASCADE"), primary_key=True),
    Column("department_id", ForeignKey("departments.id", ondelete="CASCADE"), primary_key=True),
)


class Department(Base):
    __tablename__ = "departments"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    #: where department alerts go (notifications)
    email: Mapped[str | None] = mapped_column(String(254))
    notify: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Staff(Base):
    __tablename__ = "staff"

    id: Mapped[int] = mapped_column(primary_key=True)
    login: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str | None] = mapped_column(String(254))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    password_hash: Mapped[str | None] = mapped_column(String(300))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    departments: Mapped[list[Department]] = relationship(
        secondary=staff_departments, lazy="selectin", order_by=Department.id
    )

    @property
    def department_ids(self) -> set[int]:
        return {d.id for d in self.departments}


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"), index=True)
    #: sha256 of the token: the token itself is shown once and never stored
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100), default="default")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    staff: Mapped[Staff] = relationship()


class Client(Base):
    __tablename__ = "clients"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(254))
    language: Mapped[str] = mapped_column(String(8), default="en")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ProcessingModule(Base):
    """A configured instance of an installed module plugin."""

    __tablename__ = "processing_modules"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    #: entry-point name in ``fulfil.modules`` (``manual``, ``dnshosting``, …)
    plugin: Mapped[str] = mapped_column(String(100))
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id"))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    department: Mapped[Department] = relationship(lazy="joined")


class TariffPlan(Base):
    __tablename__ = "tariff_plans"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    service_type: Mapped[str] = mapped_column(String(50))
    processing_module_id: Mapped[int] = mapped_column(ForeignKey("processing_modules.id"))
    default_params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: {"records": {"unit": "records", "min": 0, "max": 1000, "default": 100}, …}
    addons: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    processing_module: Mapped[ProcessingModule] = relationship(lazy="joined")


class Service(Base):
    __tablename__ = "services"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), index=True)
    tariff_id: Mapped[int] = mapped_column(ForeignKey("tariff_plans.id"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="ordered")
    #: the status the service will have once every requested operation is done;
    #: requests are checked against it, under the version check
    target_status: Mapped[str] = mapped_column(String(20), default="active")
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    addons: Mapped[dict[str, Any]] = mapped_column(default=dict)
    remote_id: Mapped[str | None] = mapped_column(String(200))
    expires_at: Mapped[datetime | None] = mapped_column()
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    client: Mapped[Client] = relationship(lazy="joined")
    tariff: Mapped[TariffPlan] = relationship(lazy="joined")


class Operation(Base):
    """One lifecycle request. The operations table is the queue."""

    __tablename__ = "operations"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: the idempotency key handed to the module (``ctx.operation_id``)
    key: Mapped[str] = mapped_column(String(36), unique=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id"))
    kind: Mapped[str] = mapped_column(String(10))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(15), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    run_after: Mapped[datetime] = mapped_column(default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_expires: Mapped[datetime | None] = mapped_column()
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()

    service: Mapped[Service] = relationship()

    __table_args__ = (
        Index("ix_operations_service_id_id", "service_id", "id"),
        Index("ix_operations_state_run_after", "state", "run_after"),
    )


class Task(Base):
    """Manual work for a department, created from an operation."""

    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(primary_key=True)
    type: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(12), default="new")
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id"))
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    operation_id: Mapped[int] = mapped_column(ForeignKey("operations.id"), unique=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id"), index=True)
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    close_actions: Mapped[str] = mapped_column(Text, default="")
    #: the module's error for staff, when the task came from a failure
    error: Mapped[str | None] = mapped_column(Text)
    #: the automatic module can be run again from the task
    retryable: Mapped[bool] = mapped_column(Boolean, default=False)
    main_settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    addons: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    assigned_at: Mapped[datetime | None] = mapped_column()
    closed_at: Mapped[datetime | None] = mapped_column()
    closed_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    version: Mapped[int] = mapped_column(Integer, default=1)

    department: Mapped[Department] = relationship(lazy="joined")
    assignee: Mapped[Staff | None] = relationship(foreign_keys=[assignee_id], lazy="joined")
    operation: Mapped[Operation] = relationship()
    service: Mapped[Service] = relationship()

    __table_args__ = (
        Index("ix_tasks_department_id_id", "department_id", "id"),
        Index("ix_tasks_department_id_status_id", "department_id", "status", "id"),
        Index("ix_tasks_assignee_id_id", "assignee_id", "id"),
    )


class HistoryEntry(Base):
    """The service history: events and internal staff comments."""

    __tablename__ = "history"

    id: Mapped[int] = mapped_column(primary_key=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: e.g. operation.requested, operation.failed, task.created, task.assigned, comment
    event: Mapped[str] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(Text)
    #: internal detail for staff (a traceback); never a secret
    detail: Mapped[str | None] = mapped_column(Text)
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    #: who did it, as shown: a staff login, "system" or "module:<name>"
    actor: Mapped[str] = mapped_column(String(100), default="system")
    task_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id"))
    operation_id: Mapped[int | None] = mapped_column(ForeignKey("operations.id"))

    __table_args__ = (Index("ix_history_service_id_id", "service_id", "id"),)


class ResourceClaim(Base):
    """A named resource of a module's pool (a physical server) held by a service."""

    __tablename__ = "resource_claims"

    id: Mapped[int] = mapped_column(primary_key=True)
    pool: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200))
    #: in_use · needs_wipe (out of allocation until staff free it)
    state: Mapped[str] = mapped_column(String(20), default="in_use")
    service_id: Mapped[int | None] = mapped_column(ForeignKey("services.id"))
    claimed_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("pool", "name", name="uq_resource_claims_pool_name"),)
