"""Notifications: the client's emails and the department's alerts, never lost, never
doubled.

* :mod:`fulfil.notify.plugin` — an observer plugin (registered by default) that writes
  an :class:`~fulfil.notify.models.OutboxMessage` in the transaction of each event;
* :mod:`fulfil.notify.sender` — :class:`OutboxSender`, which delivers the outbox over
  SMTP from ``fulfil serve`` / ``fulfil worker`` (its docstring says what SMTP can and
  cannot guarantee, and the rule for a message whose sender died mid-delivery);
* :mod:`fulfil.notify.render` — Jinja2 templates (plain text and HTML, per language),
  overridable from ``FULFIL_TEMPLATES_DIR``;
* :mod:`fulfil.notify.cli` — ``fulfil outbox list|retry``.
"""

from fulfil.notify.models import OUTBOX_STATES, OutboxMessage
from fulfil.notify.outbox import list_messages, retry_messages
from fulfil.notify.sender import OutboxSender, SmtpSettings

__all__ = ["OUTBOX_STATES", "OutboxMessage", "OutboxSender", "SmtpSettings", "list_messages", "retry_messages"]
