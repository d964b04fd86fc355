"""the notifications outbox (fulfil.notify.models.OutboxMessage)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 20:33:06.160118
"""
from alembic import op
import sqlalchemy as sa
import fulfil.db
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('outbox_messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.String(length=255), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('audience', sa.String(length=12), nullable=False),
    sa.Column('recipient', sa.String(length=254), nullable=False),
    sa.Column('language', sa.String(length=8), nullable=False),
    sa.Column('context', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=False),
    sa.Column('subject', sa.String(length=300), nullable=True),
    sa.Column('service_id', sa.Integer(), nullable=True),
    sa.Column('task_id', sa.Integer(), nullable=True),
    sa.Column('department_id', sa.Integer(), nullable=True),
    sa.Column('state', sa.String(length=12), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('next_attempt_at', fulfil.db.UTCDateTime(), nullable=False),
    sa.Column('lease_owner', sa.String(length=100), nullable=True),
    sa.Column('lease_expires', fulfil.db.UTCDateTime(), nullable=True),
    sa.Column('handed_over_at', fulfil.db.UTCDateTime(), nullable=True),
    sa.Column('smtp_reply', sa.String(length=500), nullable=True),
    sa.Column('created_at', fulfil.db.UTCDateTime(), nullable=False),
    sa.Column('sent_at', fulfil.db.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['department_id'], ['departments.id'], name=op.f('fk_outbox_messages_department_id_departments')),
    sa.ForeignKeyConstraint(['service_id'], ['services.id'], name=op.f('fk_outbox_messages_service_id_services')),
    sa.ForeignKeyConstraint(['task_id'], ['tasks.id'], name=op.f('fk_outbox_messages_task_id_tasks')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox_messages')),
    sa.UniqueConstraint('message_id', name=op.f('uq_outbox_messages_message_id'))
    )
    op.create_index(op.f('ix_outbox_messages_service_id'), 'outbox_messages', ['service_id'], unique=False)
    op.create_index('ix_outbox_messages_state_next_attempt_at', 'outbox_messages', ['state', 'next_attempt_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_outbox_messages_state_next_attempt_at', table_name='outbox_messages')
    op.drop_index(op.f('ix_outbox_messages_service_id'), table_name='outbox_messages')
    op.drop_table('outbox_messages')
