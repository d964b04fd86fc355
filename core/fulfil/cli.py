"""The ``fulfil`` command: run it (serve, worker), set it up (db, modules, demo), and
work it from a terminal (departments, staff, modules, tariffs, clients, services,
tasks). Tables for people by default; ``--json`` everywhere for scripts.

The database is ``FULFIL_DATABASE_URL`` (default: ``fulfil.db`` in the working
directory). A SQLite file is brought to the current schema when a command opens
it; a PostgreSQL database must be migrated on purpose, with ``fulfil db upgrade``.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fulfil.errors import Conflict, FulfilError, InvalidInput, NotFound

app = typer.Typer(
    name="fulfil",
    help="fulfil: service processing of a hosting provider's billing system.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
department_app = typer.Typer(help="Departments: who gets which tasks.", no_args_is_help=True)
staff_app = typer.Typer(help="Staff members and their API tokens.", no_args_is_help=True)
module_app = typer.Typer(help="Processing modules: configured module plugins.", no_args_is_help=True)
tariff_app = typer.Typer(help="Tariff plans.", no_args_is_help=True)
client_app = typer.Typer(help="Clients.", no_args_is_help=True)
service_app = typer.Typer(help="Services: order, show, change, suspend, resume, delete.", no_args_is_help=True)
task_app = typer.Typer(help="Tasks, worked as a staff member (--as LOGIN).", no_args_is_help=True)
resource_app = typer.Typer(help="Pool resources (physical servers): taken ones, freeing wiped ones.", no_args_is_help=True)
for _sub, _name in (
    (resource_app, "resource"),
    (db_app, "db"), (department_app, "department"), (staff_app, "staff"), (module_app, "module"),
    (tariff_app, "tariff"), (client_app, "client"), (service_app, "service"), (task_app, "task"),
):
    app.add_typer(_sub, name=_name)

try:  # the notifications' outbox, when that part is installed
    from fulfil.notify.cli import app as _outbox_app
except ImportError:
    pass
else:
    app.add_typer(_outbox_app, name="outbox", help="The notification outbox.")

# soft wrap: long lines (URLs, tokens) stay whole for copying, even when piped
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


@app.callback()
def _main() -> None:
    """fulfil: service processing of a hosting provider's billing system."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
AsOpt = Annotated[str, typer.Option("--as", help="The staff member (login) doing it.")]
OptionalAsOpt = Annotated[
    str | None, typer.Option("--as", help="The staff member (login) doing it; default: the system.")
]
KeyValues = Annotated[list[str] | None, typer.Option(help="KEY=VALUE (VALUE read as JSON when it parses). Repeatable.")]


# -- plumbing -------------------------------------------------------------------------------


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(code)


def _head_revision(url: str) -> str | None:
    from alembic.script import ScriptDirectory

    from fulfil.migrate import alembic_config

    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def open_fulfil(*, migrate: bool = True):
    """The Fulfil of this process, with a database at the current schema."""
    from fulfil.app import Fulfil
    from fulfil.db import is_sqlite
    from fulfil.migrate import current

    fulfil = Fulfil()
    if not migrate:
        return fulfil
    try:
        at = current(fulfil.engine)
    except Exception as exc:  # noqa: BLE001 - the database is away or unreadable
        raise fail(f"cannot open the database {_shown_url(fulfil)}: {exc}") from None
    if at != _head_revision(fulfil.database_url):
        if is_sqlite(fulfil.engine):
            try:
                fulfil.upgrade()
            except Exception as exc:  # noqa: BLE001
                raise fail(f"cannot migrate {_shown_url(fulfil)}: {exc}") from None
        else:
            raise fail(
                f"the database {_shown_url(fulfil)} is not at the current schema (it is at {at or 'nothing'}): "
                "run `fulfil db upgrade` first"
            )
    return fulfil


def _shown_url(fulfil) -> str:
    return fulfil.engine.url.render_as_string(hide_password=True)


@contextmanager
def session(*, read_only: bool = False) -> Iterator[Any]:
    """A transaction on the configured database; service errors become a message
    and exit code 1 (nothing is changed)."""
    fulfil = open_fulfil()
    try:
        with fulfil.session(read_only=read_only) as s:
            yield s
    except FulfilError as exc:
        raise fail(_describe(exc)) from None
    finally:
        fulfil.dispose()


def _describe(exc: FulfilError) -> str:
    if isinstance(exc, InvalidInput):
        return "; ".join(f"{field}: {reason}" for field, reason in exc.errors)
    return exc.message


def emit(data: Any, as_json: bool, table: Callable[[], Table] | None = None, text: str | None = None) -> None:
    if as_json:
        out.print_json(json.dumps(data, default=str))
    elif table is not None:
        out.print(table())
    elif text is not None:
        # texts carry names and messages people typed: never read them as markup
        out.print(text, highlight=False, markup=False)


def make_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], title: str | None = None) -> Table:
    table = Table(title=title)
    for _, header in columns:
        table.add_column(header)
    for row in rows:
        table.add_row(*(_cell(row.get(key)) for key, _ in columns))
    return table


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, dict):
        if "name" in value:
            return str(value["name"])
        if "login" in value:
            return str(value["login"])
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "—"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "—"
    return str(value)


def parse_pairs(pairs: Sequence[str] | None, option: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise fail(f"{option} {pair!r}: write KEY=VALUE")
        try:
            result[key] = json.loads(raw)
        except ValueError:
            result[key] = raw
    return result


def dump(model) -> dict[str, Any]:
    return model.model_dump(mode="json")


# -- references by name or id -----------------------------------------------------------------


def _by_name_or_id(s, model, column, ref: str, what: str):
    from sqlalchemy import select

    obj = s.get(model, int(ref)) if ref.isdigit() else s.scalar(select(model).where(column == ref))
    if obj is None:
        raise NotFound(what, ref)
    return obj


def department_ref(s, ref: str):
    from fulfil.services import catalog

    return catalog.department_by_name_or_id(s, ref)


def staff_ref(s, login: str | None):
    from fulfil.services import catalog

    return catalog.staff_by_login(s, login) if login else None


def module_ref(s, ref: str):
    from fulfil.models import ProcessingModule

    return _by_name_or_id(s, ProcessingModule, ProcessingModule.name, ref, "processing module")


def tariff_ref(s, ref: str):
    from fulfil.models import TariffPlan

    return _by_name_or_id(s, TariffPlan, TariffPlan.name, ref, "tariff plan")


def client_ref(s, ref: str):
    from fulfil.models import Client

    column = Client.email if "@" in ref else Client.name
    return _by_name_or_id(s, Client, column, ref, "client")


# -- db, modules, worker, serve, demo -------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(as_json: JsonOpt = False) -> None:
    """Bring the database to the current schema (safe to run again)."""
    from fulfil.migrate import current

    fulfil = open_fulfil(migrate=False)
    try:
        fulfil.upgrade()
        revision = current(fulfil.engine)
    except Exception as exc:  # noqa: BLE001
        raise fail(f"cannot migrate {_shown_url(fulfil)}: {exc}") from None
    finally:
        fulfil.dispose()
    emit({"database": _shown_url(fulfil), "revision": revision}, as_json,
         text=f"database {_shown_url(fulfil)} is at revision {revision}")


@app.command("modules")
def modules(as_json: JsonOpt = False) -> None:
    """Installed module plugins, their operations, and the ones that failed to load."""
    from fulfil.plugins import default_registry

    registry = default_registry()
    items = [
        {
            "name": name,
            "title": loaded.info.title,
            "operations": sorted(loaded.info.operations),
            "origin": loaded.origin,
        }
        for name, loaded in sorted(registry.modules.items())
    ]
    errors = [{"name": n, "reason": r} for n, r in sorted(registry.load_errors.items())]
    if as_json:
        emit({"modules": items, "load_errors": errors}, True)
        return
    out.print(make_table(items, [("name", "module"), ("title", "title"), ("operations", "operations")],
                         title="Installed module plugins"))
    if errors:
        out.print(make_table(errors, [("name", "module"), ("reason", "why it is not usable")], title="Load errors"))


def _wait_for_signal() -> int:
    stop = threading.Event()
    got: list[int] = []

    def handler(signum, _frame):
        got.append(signum)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)
    while not stop.wait(3600):
        pass
    return got[0]


@app.command("worker")
def worker(concurrency: Annotated[int, typer.Option(min=1, max=256, help="Module calls run at once.")] = 4) -> None:
    """Run the operations engine until SIGTERM or SIGINT, then stop cleanly."""
    logging.getLogger("fulfil").setLevel(logging.INFO)
    fulfil = open_fulfil()
    background = fulfil.start_background(concurrency=concurrency)
    err.print(
        f"worker {background.worker.owner} running on {_shown_url(fulfil)} with {concurrency} threads"
        + ("" if background.sender else " (emails wait in the outbox: FULFIL_SMTP_HOST is not set)")
        + "; Ctrl+C stops it"
    )
    signum = _wait_for_signal()
    err.print(f"{signal.Signals(signum).name}: finishing the module calls in progress…")
    background.stop()
    fulfil.dispose()
    err.print("worker stopped")


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    no_worker: Annotated[bool, typer.Option("--no-worker", help="API only: run workers elsewhere (`fulfil worker`).")] = False,
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="Worker threads running module calls.")] = 4,
) -> None:
    """Run the API, the web pages and (unless --no-worker) the worker in one process."""
    import uvicorn

    from fulfil.api import API_PREFIX, create_app
    from fulfil.services.demo import ADMIN_TOKEN, demo_exists

    fulfil = open_fulfil()
    api = create_app(fulfil, with_worker=not no_worker, concurrency=concurrency)
    with fulfil.session(read_only=True) as s:
        demo = demo_exists(session=s)
    base = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    lines = [f"fulfil on {_shown_url(fulfil)}" + ("" if no_worker else f", worker with {concurrency} threads")]
    if api.state.web_ui:
        lines.append(f"  web UI:   {base}/")
    lines += [f"  REST API: {base}{API_PREFIX}   (OpenAPI {base}/openapi.json, docs {base}/docs)"]
    if demo:
        lines += [
            f"  demo token (admin): {ADMIN_TOKEN}",
            f"    curl -H 'Authorization: Bearer {ADMIN_TOKEN}' {base}{API_PREFIX}/tasks",
            "  demo logins: admin / admin-demo, support / support-demo, ops / ops-demo, noc / noc-demo",
        ]
    err.print("\n".join(lines), highlight=False)
    uvicorn.run(api, host=host, port=port, log_level="info")


@app.command("demo")
def demo(
    once: Annotated[bool, typer.Option("--once", help="Do nothing when the demo data exists already.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create demo data: departments, staff with known logins and tokens, processing
    modules and tariff plans, clients and a few ordered services; then show the tasks."""
    from fulfil.services import demo as demo_data
    from fulfil.services import tasks as task_service

    fulfil = open_fulfil()
    try:
        with fulfil.session() as s:
            exists = demo_data.demo_exists(session=s)
            if exists and not once:
                raise fail("the demo data exists already (use --once to accept that)")
            created = None if exists else demo_data.create_demo(session=s)
        pending = 0
        if created is not None:
            # run what is due now: Manual Setup asks for tasks, unreachable panels fail
            w = fulfil.worker(concurrency=2)
            w.run_pending()
            from sqlalchemy import func, select

            from fulfil.models import Operation

            with fulfil.session(read_only=True) as s:
                pending = s.scalar(select(func.count()).select_from(Operation).where(Operation.state == "pending"))
        with fulfil.session(read_only=True) as s:
            from fulfil.api import views

            admin = staff_ref(s, "admin")
            rows, _ = task_service.list_tasks(session=s, staff=admin, status="open", limit=50)
            task_rows = [dump(views.task(t)) for t in rows]
    finally:
        fulfil.dispose()
    logins = [vars(x) | {"departments": list(x.departments)} for x in demo_data.demo_logins()]
    if as_json:
        emit({
            "created": created is not None,
            "logins": logins,
            "tariffs": created.tariffs if created else None,
            "service_ids": created.service_ids if created else None,
            "skipped": created.skipped if created else None,
            "operations_retrying": pending,
            "tasks": task_rows,
        }, True)
        return
    out.print("demo data created" if created else "demo data exists already: nothing created")
    out.print(make_table(logins, [("login", "login"), ("password", "web password"), ("token", "API token"),
                                  ("is_admin", "admin"), ("departments", "departments")], title="Demo staff"))
    if created:
        if created.tariffs:
            out.print("tariff plans: " + ", ".join(created.tariffs))
        for note in created.skipped:
            out.print(f"[yellow]left out:[/] {escape(note)}", highlight=False)
        out.print(f"ordered services: {', '.join(f'#{i}' for i in created.service_ids) or 'none'}")
    out.print(make_table(task_rows, _TASK_COLUMNS, title="Open tasks"))
    if pending:
        out.print(f"{pending} operation(s) are retrying against panels that are not running here; "
                  "the worker of `fulfil serve` turns them into tasks when their retries run out.")


# -- departments, staff -----------------------------------------------------------------------------

_DEPT_COLUMNS = [("id", "id"), ("name", "name"), ("email", "email"), ("notify", "notify")]
_STAFF_COLUMNS = [("id", "id"), ("login", "login"), ("name", "name"), ("is_admin", "admin"),
                  ("department_ids", "departments"), ("active", "active")]


@department_app.command("add")
def department_add(
    name: str,
    email: Annotated[str | None, typer.Option(help="Where the department's alerts go.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a department."""
    from fulfil.api import schemas
    from fulfil.services import catalog

    with session() as s:
        row = dump(schemas.DepartmentRead.model_validate(catalog.create_department(session=s, name=name, email=email)))
    emit(row, as_json, text=f"department #{row['id']} {row['name']} added")


@department_app.command("set")
def department_set(
    department: Annotated[str, typer.Argument(help="Department name or id.")],
    email: Annotated[str | None, typer.Option(help="Where its task alerts go ('' clears it).")] = None,
    alerts: Annotated[bool | None, typer.Option("--alerts/--no-alerts", help="Send task alerts or not.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Change where and whether a department's task alerts go."""
    from fulfil.api import schemas
    from fulfil.services import catalog

    changes: dict[str, Any] = {}
    if email is not None:
        changes["email"] = email
    if alerts is not None:
        changes["notify"] = alerts
    with session() as s:
        dept = catalog.department_by_name_or_id(s, department)
        row = dump(schemas.DepartmentRead.model_validate(
            catalog.update_department(session=s, department_id=dept.id, **changes)))
    emit(row, as_json, text=f"department #{row['id']} {row['name']}: alerts "
         + (f"on, to {row['email']}" if row["notify"] and row["email"] else "off" if not row["notify"] else "on, but no address"))


@department_app.command("list")
def department_list(as_json: JsonOpt = False) -> None:
    """List departments."""
    from fulfil.api import schemas
    from fulfil.services import catalog

    with session(read_only=True) as s:
        rows = [dump(schemas.DepartmentRead.model_validate(d)) for d in catalog.list_departments(session=s)]
    emit(rows, as_json, lambda: make_table(rows, _DEPT_COLUMNS, title="Departments"))


@staff_app.command("add")
def staff_add(
    login: Annotated[str, typer.Argument(help="The login (letters, digits, . _ -).")],
    name: Annotated[str, typer.Option(help="Full name.")] = "",
    email: Annotated[str | None, typer.Option()] = None,
    department: Annotated[list[str] | None, typer.Option(help="Department name or id. Repeatable.")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="Sees and does everything.")] = False,
    password: Annotated[bool, typer.Option("--password", help="Ask for a web UI password (hidden).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Add a staff member and print their API token (shown this once)."""
    from fulfil.api import views
    from fulfil.services import catalog

    secret = typer.prompt("Password", hide_input=True, confirmation_prompt=True) if password else None
    with session() as s:
        dept_ids = [department_ref(s, d).id for d in department or ()]
        member, token = catalog.create_staff(
            session=s, login=login, name=name, email=email, department_ids=dept_ids, is_admin=admin, password=secret,
        )
        row = dump(views.staff(member)) | {"token": token}
    emit(row, as_json, text=f"staff member #{row['id']} {row['login']} added\nAPI token (shown once): {token}")


@staff_app.command("list")
def staff_list(as_json: JsonOpt = False) -> None:
    """List staff members."""
    from fulfil.api import views
    from fulfil.services import catalog

    with session(read_only=True) as s:
        rows = [dump(views.staff(m)) for m in catalog.list_staff(session=s)]
    emit(rows, as_json, lambda: make_table(rows, _STAFF_COLUMNS, title="Staff"))


# -- processing modules, tariff plans, clients ------------------------------------------------------

_PM_COLUMNS = [("id", "id"), ("name", "name"), ("module", "plugin"), ("installed", "installed"),
               ("department", "department"), ("enabled", "enabled"), ("settings", "settings")]
_TARIFF_COLUMNS = [("id", "id"), ("name", "name"), ("service_type", "type"),
                   ("processing_module_id", "processing module"), ("addons", "add-ons")]
_CLIENT_COLUMNS = [("id", "id"), ("name", "name"), ("email", "email"), ("language", "language")]


@module_app.command("add")
def module_add(
    name: str,
    module: Annotated[str, typer.Option("--module", help="The module plugin (see `fulfil modules`).")],
    department: Annotated[str, typer.Option(help="The responsible department (name or id).")],
    setting: KeyValues = None,
    settings_json: Annotated[str | None, typer.Option(help="All settings as one JSON object.")] = None,
    disabled: Annotated[bool, typer.Option("--disabled")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Configure a processing module: a module plugin with its connection settings."""
    from fulfil.api import views
    from fulfil.services import catalog

    settings = _json_object(settings_json, "--settings-json") | parse_pairs(setting, "--setting")
    with session() as s:
        pm = catalog.create_processing_module(
            session=s, name=name, plugin=module, department_id=department_ref(s, department).id,
            settings=settings, enabled=not disabled,
        )
        row = dump(views.processing_module(s, pm))
    emit(row, as_json, text=f"processing module #{row['id']} {row['name']} ({row['module']}) added")


def _json_object(raw: str | None, option: str) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise fail(f"{option}: not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise fail(f"{option}: give a JSON object")
    return value


@module_app.command("list")
def module_list(as_json: JsonOpt = False) -> None:
    """List processing modules (secrets masked)."""
    from fulfil.api import views
    from fulfil.services import catalog

    with session(read_only=True) as s:
        rows = [dump(views.processing_module(s, m)) for m in catalog.list_processing_modules(session=s)]
    emit(rows, as_json, lambda: make_table(rows, _PM_COLUMNS, title="Processing modules"))


@module_app.command("check")
def module_check(module: Annotated[str, typer.Argument(help="Processing module name or id.")], as_json: JsonOpt = False) -> None:
    """Check the connection to a processing module's panel."""
    from fulfil.services import catalog

    with session(read_only=True) as s:
        pm = module_ref(s, module)
        ok, message = catalog.check_connection(session=s, processing_module_id=pm.id)
    emit({"ok": ok, "message": message}, as_json, text=("ok: " if ok else "failed: ") + message)
    if not ok:
        raise typer.Exit(1)


def _addon_definitions(specs: Sequence[str] | None) -> dict[str, Any]:
    """NAME=MIN:MAX[:DEFAULT[:UNIT]] (an empty MAX: no upper bound)."""
    out_: dict[str, Any] = {}
    for spec in specs or ():
        name, sep, rest = spec.partition("=")
        parts = rest.split(":")
        if not sep or not name or len(parts) < 2:
            raise fail(f"--addon {spec!r}: write NAME=MIN:MAX[:DEFAULT[:UNIT]]")
        try:
            definition: dict[str, Any] = {"min": int(parts[0] or 0)}
            if parts[1]:
                definition["max"] = int(parts[1])
            if len(parts) > 2 and parts[2]:
                definition["default"] = int(parts[2])
        except ValueError:
            raise fail(f"--addon {spec!r}: MIN, MAX and DEFAULT are whole numbers") from None
        if len(parts) > 3:
            definition["unit"] = parts[3]
        out_[name] = definition
    return out_


@tariff_app.command("add")
def tariff_add(
    name: str,
    service_type: Annotated[str, typer.Option("--type", help="Service type, e.g. hosting, dns, dedicated.")],
    module: Annotated[str, typer.Option("--module", help="The processing module (name or id).")],
    param: KeyValues = None,
    addon: Annotated[list[str] | None, typer.Option(help="NAME=MIN:MAX[:DEFAULT[:UNIT]]. Repeatable.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a tariff plan bound to a processing module."""
    from fulfil.api import views
    from fulfil.services import catalog

    with session() as s:
        plan = catalog.create_tariff(
            session=s, name=name, service_type=service_type, processing_module_id=module_ref(s, module).id,
            default_params=parse_pairs(param, "--param"), addons=_addon_definitions(addon),
        )
        row = dump(views.tariff(s, plan))
    emit(row, as_json, text=f"tariff plan #{row['id']} {row['name']} added")


@tariff_app.command("list")
def tariff_list(as_json: JsonOpt = False) -> None:
    """List tariff plans."""
    from fulfil.api import views
    from fulfil.services import catalog

    with session(read_only=True) as s:
        rows = [dump(views.tariff(s, t)) for t in catalog.list_tariffs(session=s)]
    emit(rows, as_json, lambda: make_table(rows, _TARIFF_COLUMNS, title="Tariff plans"))


@client_app.command("add")
def client_add(
    name: str,
    email: str,
    language: Annotated[str, typer.Option(help="Language of the client's emails.")] = "en",
    as_json: JsonOpt = False,
) -> None:
    """Add a client."""
    from fulfil.api import schemas
    from fulfil.services import catalog

    with session() as s:
        row = dump(schemas.ClientRead.model_validate(catalog.create_client(session=s, name=name, email=email, language=language)))
    emit(row, as_json, text=f"client #{row['id']} {row['name']} added")


@client_app.command("list")
def client_list(as_json: JsonOpt = False) -> None:
    """List clients."""
    from fulfil.api import schemas
    from fulfil.services import catalog

    with session(read_only=True) as s:
        rows = [dump(schemas.ClientRead.model_validate(c)) for c in catalog.list_clients(session=s)]
    emit(rows, as_json, lambda: make_table(rows, _CLIENT_COLUMNS, title="Clients"))


# -- services --------------------------------------------------------------------------------------

_SERVICE_COLUMNS = [("id", "id"), ("client", "client"), ("tariff", "tariff plan"), ("status", "status"),
                    ("target_status", "becomes"), ("params", "main settings"), ("addons", "add-ons")]
_HISTORY_COLUMNS = [("created_at", "when"), ("actor", "who"), ("event", "event"), ("message", "what")]


def _service_row(s, service_id: int, staff=None, detail: bool = False) -> dict[str, Any]:
    from fulfil.api import views
    from fulfil.services import lifecycle

    return dump(views.service(s, lifecycle.get_service(session=s, service_id=service_id, staff=staff), detail=detail))


def _print_service(row: dict[str, Any], as_json: bool, headline: str | None = None) -> None:
    if as_json:
        emit(row, True)
        return
    if headline:
        out.print(headline, highlight=False, markup=False)
    out.print(make_table([row], _SERVICE_COLUMNS))
    if row.get("pending_operation"):
        op = row["pending_operation"]
        out.print(f"pending: {op['kind']} ({op['state']}, {op['attempts']} attempts)"
                  + (f": {op['last_error']}" if op.get("last_error") else ""), highlight=False, markup=False)
    if "history" in row:
        out.print(make_table(row["history"], _HISTORY_COLUMNS, title="History"))


@service_app.command("order")
def service_order(
    client: Annotated[str, typer.Option(help="Client id, email or name.")],
    tariff: Annotated[str, typer.Option(help="Tariff plan name or id.")],
    param: KeyValues = None,
    addon: KeyValues = None,
    as_: OptionalAsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Order a service: its open operation is queued for the worker."""
    from fulfil.services import lifecycle

    with session() as s:
        svc = lifecycle.order_service(
            session=s, client_id=client_ref(s, client).id, tariff_id=tariff_ref(s, tariff).id,
            params=parse_pairs(param, "--param"), addons=parse_pairs(addon, "--addon"), staff=staff_ref(s, as_),
        )
        row = _service_row(s, svc.id)
    _print_service(row, as_json, f"service #{row['id']} ordered")


@service_app.command("show")
def service_show(service_id: int, as_json: JsonOpt = False) -> None:
    """A service with its pending operation and history."""
    with session(read_only=True) as s:
        row = _service_row(s, service_id, detail=True)
    _print_service(row, as_json)


@service_app.command("list")
def service_list(
    status: Annotated[str | None, typer.Option(help="ordered, processing, active, suspended or deleted.")] = None,
    tariff: Annotated[str | None, typer.Option(help="Tariff plan name or id.")] = None,
    client: Annotated[str | None, typer.Option(help="Client id, email or name.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List services, newest first."""
    from fulfil.api import views
    from fulfil.services import lifecycle

    with session(read_only=True) as s:
        rows = [
            dump(views.service(s, v))
            for v in lifecycle.list_services(
                session=s, status=status, limit=limit,
                tariff_id=tariff_ref(s, tariff).id if tariff else None,
                client_id=client_ref(s, client).id if client else None,
            )
        ]
    emit(rows, as_json, lambda: make_table(rows, _SERVICE_COLUMNS, title="Services"))


def _lifecycle_command(kind: str, service_id: int | None, tariff: str | None, all_: bool, as_: str | None, as_json: bool) -> None:
    """One service, or (--tariff T --all) every service of a tariff plan that the
    request applies to, each in its own transaction, with a progress bar."""
    from fulfil.services import lifecycle

    action = {"suspend": lifecycle.suspend_service, "resume": lifecycle.resume_service,
              "close": lifecycle.delete_service}[kind]
    verb = {"suspend": "suspended", "resume": "resumed", "close": "deleted"}[kind]
    if service_id is not None:
        if tariff or all_:
            raise fail("give a service id, or --tariff with --all, not both")
        with session() as s:
            action(session=s, service_id=service_id, staff=staff_ref(s, as_))
            row = _service_row(s, service_id)
        _print_service(row, as_json, f"service #{service_id}: {kind} requested")
        return
    if not (tariff and all_):
        raise fail(f"give a service id, or --tariff T --all to have every service of a tariff plan {verb}")
    applies_to = {"suspend": "active", "resume": "suspended", "close": None}[kind]
    with session(read_only=True) as s:
        plan = tariff_ref(s, tariff)
        ids = [i for i in lifecycle.services_of_tariff(session=s, tariff_id=plan.id, status=applies_to)]
        if kind == "close":
            ids = [i for i in ids if lifecycle.get_service(session=s, service_id=i).target_status != "deleted"]
        plan_name = plan.name
    done, refused = [], []
    fulfil = open_fulfil()
    try:
        from rich.progress import Progress

        with Progress(console=err, transient=as_json) as progress:
            bar = progress.add_task(f"{kind} {plan_name}", total=len(ids))
            for sid in ids:
                try:
                    with fulfil.session() as s:
                        action(session=s, service_id=sid, staff=staff_ref(s, as_))
                    done.append(sid)
                except (Conflict, NotFound, InvalidInput) as exc:
                    refused.append({"id": sid, "reason": _describe(exc)})
                progress.advance(bar)
    finally:
        fulfil.dispose()
    emit({"requested": done, "refused": refused}, as_json,
         text=f"{kind} requested for {len(done)} service(s) of {plan_name}"
         + (f"; {len(refused)} refused: " + "; ".join(f"#{r['id']} {r['reason']}" for r in refused) if refused else ""))


ServiceIdArg = Annotated[int | None, typer.Argument(help="The service id (or --tariff T --all).")]
TariffAllOpt = Annotated[str | None, typer.Option(help="Every service of this tariff plan (with --all).")]
AllOpt = Annotated[bool, typer.Option("--all", help="Confirm: every service of --tariff.")]


@service_app.command("suspend")
def service_suspend(service_id: ServiceIdArg = None, tariff: TariffAllOpt = None, all_: AllOpt = False,
                    as_: OptionalAsOpt = None, as_json: JsonOpt = False) -> None:
    """Suspend a service, or every active service of a tariff plan."""
    _lifecycle_command("suspend", service_id, tariff, all_, as_, as_json)


@service_app.command("resume")
def service_resume(service_id: ServiceIdArg = None, tariff: TariffAllOpt = None, all_: AllOpt = False,
                   as_: OptionalAsOpt = None, as_json: JsonOpt = False) -> None:
    """Resume a suspended service, or every suspended service of a tariff plan."""
    _lifecycle_command("resume", service_id, tariff, all_, as_, as_json)


@service_app.command("delete")
def service_delete(service_id: ServiceIdArg = None, tariff: TariffAllOpt = None, all_: AllOpt = False,
                   as_: OptionalAsOpt = None, as_json: JsonOpt = False) -> None:
    """Delete a service (or every service of a tariff plan)."""
    _lifecycle_command("close", service_id, tariff, all_, as_, as_json)


@service_app.command("edit")
def service_edit(
    service_id: int,
    param: KeyValues = None,
    addon: KeyValues = None,
    tariff: Annotated[str | None, typer.Option(help="Move to this tariff plan (same processing module).")] = None,
    expires: Annotated[str | None, typer.Option(help="New expiry, ISO 8601 with a time zone.")] = None,
    as_: OptionalAsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a service's main settings, add-ons, tariff plan or expiry."""
    from datetime import datetime

    from fulfil.services import lifecycle

    try:
        expires_at = datetime.fromisoformat(expires) if expires else None
    except ValueError:
        raise fail(f"--expires {expires!r}: write an ISO 8601 time, e.g. 2027-01-01T00:00:00+00:00") from None
    with session() as s:
        lifecycle.edit_service(
            session=s, service_id=service_id, staff=staff_ref(s, as_),
            params=parse_pairs(param, "--param") or None, addons=parse_pairs(addon, "--addon") or None,
            tariff_id=tariff_ref(s, tariff).id if tariff else None, expires_at=expires_at,
        )
        row = _service_row(s, service_id)
    _print_service(row, as_json, f"service #{service_id}: change requested")


# -- tasks -----------------------------------------------------------------------------------------

_TASK_COLUMNS = [("id", "id"), ("type", "type"), ("status", "status"), ("department", "department"),
                 ("assignee", "assignee"), ("service_id", "service"), ("title", "title"), ("error", "error")]


def _task_row(task) -> dict[str, Any]:
    from fulfil.api import views

    return dump(views.task(task))


def _print_task(row: dict[str, Any], as_json: bool, headline: str) -> None:
    emit(row, as_json, text=f"{headline}\n" + "  ".join(f"{h}: {_cell(row.get(k))}" for k, h in _TASK_COLUMNS[1:6]))


@task_app.command("list")
def task_list(
    as_: AsOpt,
    status: Annotated[str | None, typer.Option(help="new, in_progress, closed or open.")] = None,
    type_: Annotated[str | None, typer.Option("--type", help="setup, change, delete, suspend or resume.")] = None,
    department: Annotated[str | None, typer.Option(help="Department name or id.")] = None,
    assignee: Annotated[str | None, typer.Option(help="me, none or a staff id.")] = None,
    service: Annotated[int | None, typer.Option(help="Service id.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 50,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Tasks of your departments (admins: all), newest first."""
    from fulfil.services import tasks

    with session(read_only=True) as s:
        rows, nxt = tasks.list_tasks(
            session=s, staff=staff_ref(s, as_), status=status, type=type_,
            department_id=department_ref(s, department).id if department else None,
            assignee=assignee, service_id=service, limit=limit, cursor=cursor,
        )
        items = [_task_row(t) for t in rows]
    if as_json:
        emit({"items": items, "next_cursor": nxt}, True)
        return
    out.print(make_table(items, _TASK_COLUMNS, title="Tasks"))
    if nxt:
        out.print(f"more: --cursor {nxt}")


@task_app.command("show")
def task_show(
    task_id: int,
    as_: AsOpt,
    reveal: Annotated[bool, typer.Option("--reveal-secrets", help="Show secrets (recorded in the history).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """The task form: general information, main settings, add-ons, history."""
    from fulfil.api import views
    from fulfil.services import tasks

    with session(read_only=not reveal) as s:
        form = tasks.task_form(session=s, staff=staff_ref(s, as_), task_id=task_id, reveal_secrets=reveal)
        detail = dump(views.task_detail(form))
    if as_json:
        emit(detail, True)
        return
    g = detail["general"]
    out.print(f"[bold]Task #{g['id']}[/] {escape(g['title'])}", highlight=False)
    out.print(f"type {g['type']} · status {g['status']} · department {g['department']['name']} · "
              f"assignee {_cell(g['assignee'])} · since {g['activation_date']}", highlight=False)
    if g.get("error"):
        out.print(f"[red]module error:[/] {escape(g['error'])}" + (" (retry possible)" if g["retryable"] else ""),
                  highlight=False)
    out.print("\n" + g["description"] + "\n", highlight=False, markup=False)
    out.print(g["close_actions"] + "\n", highlight=False, markup=False, style="italic")
    out.print(g["service_description"] + "\n", highlight=False, markup=False)
    out.print(make_table([{"key": k, "value": v} for k, v in sorted(detail["main_settings"].items())],
                         [("key", "main setting"), ("value", "value")], title="Main settings"))
    out.print(make_table([{"key": k, "value": v} for k, v in sorted(detail["addons"].items())],
                         [("key", "add-on"), ("value", "amount")],
                         title="Add-ons" + ("" if detail["addons_editable"] else " (read only)")))
    out.print(make_table(g["history"], _HISTORY_COLUMNS, title="History"))


@task_app.command("assign")
def task_assign(task_id: int, as_: AsOpt, as_json: JsonOpt = False) -> None:
    """Assign the task to yourself."""
    from fulfil.services import tasks

    with session() as s:
        row = _task_row(tasks.assign_to_me(session=s, staff=staff_ref(s, as_), task_id=task_id))
    _print_task(row, as_json, f"task #{task_id} assigned to {as_}")


@task_app.command("transfer")
def task_transfer(
    task_id: int,
    to: Annotated[str, typer.Option("--to", help="The department (name or id).")],
    as_: AsOpt,
    as_json: JsonOpt = False,
) -> None:
    """Pass the task to another department (the assignee is cleared)."""
    from fulfil.services import tasks

    with session() as s:
        dept = department_ref(s, to)
        row = _task_row(tasks.transfer(session=s, staff=staff_ref(s, as_), task_id=task_id, department_id=dept.id))
    _print_task(row, as_json, f"task #{task_id} passed to {row['department']['name']}")


@task_app.command("edit")
def task_edit(
    task_id: int,
    as_: AsOpt,
    setting: KeyValues = None,
    addon: KeyValues = None,
    as_json: JsonOpt = False,
) -> None:
    """Edit the task's main settings (and, on change tasks, add-ons)."""
    from fulfil.services import tasks

    if not setting and not addon:
        raise fail("give --setting KEY=VALUE or --addon NAME=AMOUNT")
    with session() as s:
        row = _task_row(tasks.update_task(
            session=s, staff=staff_ref(s, as_), task_id=task_id,
            main_settings=parse_pairs(setting, "--setting") or None, addons=parse_pairs(addon, "--addon") or None,
        ))
    _print_task(row, as_json, f"task #{task_id} updated")


@task_app.command("comment")
def task_comment(task_id: int, text: str, as_: AsOpt, as_json: JsonOpt = False) -> None:
    """Add an internal comment to the service history."""
    from fulfil.api import views
    from fulfil.services import tasks

    with session() as s:
        row = dump(views.history(tasks.add_comment(session=s, staff=staff_ref(s, as_), task_id=task_id, text=text)))
    emit(row, as_json, text=f"comment added to task #{task_id}")


@task_app.command("retry")
def task_retry(task_id: int, as_: AsOpt, as_json: JsonOpt = False) -> None:
    """Run the automatic module again; on success the task closes itself."""
    from fulfil.services import tasks

    with session() as s:
        row = _task_row(tasks.retry(session=s, staff=staff_ref(s, as_), task_id=task_id))
    _print_task(row, as_json, f"task #{task_id}: the module will try again")


@task_app.command("close")
def task_close(task_id: int, as_: AsOpt, as_json: JsonOpt = False) -> None:
    """Close the task: the service moves on."""
    from fulfil.services import tasks

    with session() as s:
        row = _task_row(tasks.close(session=s, staff=staff_ref(s, as_), task_id=task_id))
    _print_task(row, as_json, f"task #{task_id} closed")


def main() -> None:  # pragma: no cover - the console script calls app directly
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


# -- pool resources ------------------------------------------------------------------------------

_RESOURCE_COLUMNS = [("pool", "pool"), ("name", "name"), ("state", "state"), ("service_id", "service"),
                     ("claimed_at", "since")]


@resource_app.command("list")
def resource_list(
    pool: Annotated[str | None, typer.Option(help="Only this pool.")] = None, as_json: JsonOpt = False
) -> None:
    """Taken resources (in use, or waiting for a wipe); what is not listed is free."""
    from fulfil.api import schemas
    from fulfil.services import catalog

    with session(read_only=True) as s:
        rows = [dump(schemas.ResourceRead.model_validate(r)) for r in catalog.list_resources(session=s, pool=pool)]
    emit(rows, as_json, lambda: make_table(rows, _RESOURCE_COLUMNS, title="Taken resources"))


@resource_app.command("free")
def resource_free(
    pool: Annotated[str, typer.Argument(help="The pool, e.g. dedicated.")],
    name: Annotated[str, typer.Argument(help="The resource, as `fulfil resource list` shows it.")],
    as_json: JsonOpt = False,
) -> None:
    """Return a wiped server (or other resource) to its pool."""
    from fulfil.services import catalog

    with session() as s:
        catalog.free_resource(session=s, pool=pool, name=name)
    emit({"pool": pool, "name": name, "state": "free"}, as_json, text=f"{name} is back in pool {pool}")
