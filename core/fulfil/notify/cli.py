"""``fulfil outbox``: see what waits, what went out, what failed; queue messages again.

Mounted by the main CLI as ``app.add_typer(fulfil.notify.cli.app, name="outbox")``.
Lists show recipient, subject, state and attempts — never a body (bodies may carry
the client's secrets).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import asdict
from typing import Annotated, Any

import typer

from fulfil.notify.models import OUTBOX_STATES

app = typer.Typer(help="The email outbox: messages waiting, sent, failed.", no_args_is_help=True)

_URL_KEY = "fulfil.notify.database_url"


@app.callback()
def _options(
    ctx: typer.Context,
    database_url: Annotated[
        str | None, typer.Option("--database-url", envvar="FULFIL_DATABASE_URL", help="Database (default: ./fulfil.db).")
    ] = None,
) -> None:
    ctx.meta[_URL_KEY] = database_url


@contextmanager
def _session(ctx: typer.Context, *, read_only: bool = False):
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from fulfil.app import Fulfil
    from fulfil.plugins import ModuleRegistry

    # the outbox needs no plugins: do not load them
    fulfil = Fulfil(ctx.meta.get(_URL_KEY), registry=ModuleRegistry.empty())
    try:
        with fulfil.session(read_only=read_only) as session:
            yield session
    except SQLAlchemyError as exc:
        shown = make_url(fulfil.database_url).render_as_string(hide_password=True)
        typer.echo(
            f"cannot work the outbox in {shown}: {type(exc.orig or exc).__name__} "
            "(is the database at the current schema? `fulfil db upgrade`)",
            err=True,
        )
        raise typer.Exit(1) from None
    finally:
        fulfil.dispose()


def _json(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False, indent=2)


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


@app.command("list")
def list_command(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option(help=f"Only this state: {', '.join(OUTBOX_STATES)}.")] = None,
    service: Annotated[int | None, typer.Option(help="Only messages about this service id.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List messages, newest first: recipient, subject, state, attempts."""
    from fulfil.notify.outbox import list_messages

    with _session(ctx, read_only=True) as session:
        try:
            entries = list_messages(session, state=state, service_id=service, limit=limit)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    if as_json:
        typer.echo(_json([asdict(e) for e in entries]))
        return
    if not entries:
        typer.echo("no messages")
        return
    typer.echo(f"{'ID':>6}  {'CREATED (UTC)':19}  {'STATE':11}  {'TRIES':>5}  {'KIND':17}  {'TO':30}  SUBJECT")
    for e in entries:
        typer.echo(
            f"{e.id:>6}  {_when(e.created_at):19}  {e.state:11}  {e.attempts:>5}  {e.kind:17}  "
            f"{e.recipient[:30]:30}  {e.subject or '-'}"
        )
        if e.state == "pending" and e.attempts:
            typer.echo(f"{'':8}next try {_when(e.next_attempt_at)}")
        if e.last_error and e.state != "sent":
            typer.echo(f"{'':8}last error: {e.last_error[:300]}")
        if e.state == "unconfirmed":
            typer.echo(f"{'':8}Message-ID: {e.message_id}")


@app.command("retry")
def retry_command(
    ctx: typer.Context,
    ids: Annotated[list[int] | None, typer.Argument(help="Message ids.")] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Every failed message.")] = False,
    resend: Annotated[bool, typer.Option("--resend", help="Also send sent messages again.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Queue messages again, to go out at once (same Message-ID).

    Failed and unconfirmed messages go back to the queue; pending ones skip their
    back-off. An unconfirmed message may have arrived already: check the mail server's
    log for its Message-ID first.
    """
    from fulfil.notify.outbox import retry_messages

    if not ids and not failed:
        raise typer.BadParameter("give message ids, or --failed")
    with _session(ctx) as session:
        result = retry_messages(session, ids=ids or (), all_failed=failed, resend_sent=resend)
    missing = any(r == "no such message" for r in result.skipped.values())
    if as_json:
        typer.echo(_json({"requeued": result.requeued, "skipped": {str(k): v for k, v in result.skipped.items()}}))
        if missing:
            raise typer.Exit(1)
        return
    if result.requeued:
        typer.echo(f"queued again: {', '.join(str(i) for i in result.requeued)}")
    else:
        typer.echo("nothing queued again")
    for mid, reason in sorted(result.skipped.items()):
        typer.echo(f"message {mid}: {reason}", err=True)
    if missing:
        raise typer.Exit(1)
