"""alerts_outbox: alerts to Slack / Teams / signed webhooks / e-mail (integration.alerts).

One row per (ticket, event, level entry, clock/threshold, channel), inserted in the same transaction
as the decision that caused it; the worker sends pending rows out of band. `dedupe_key` is unique, so
a redelivered webhook, a recovered pass or a timer fired twice never queues a second alert. The row
holds the channel's name, never its URL or password: those are read from the environment at send time.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'alerts_outbox',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), primary_key=True, autoincrement=True),
        sa.Column('dedupe_key', sa.String(length=400), nullable=False),
        sa.Column('vendor', sa.String(length=16), nullable=False),
        sa.Column('ticket_id', sa.String(length=64), nullable=False),
        sa.Column('event', sa.String(length=32), nullable=False),
        sa.Column('level', sa.String(length=64), nullable=False),
        sa.Column('clock', sa.String(length=32), nullable=False),
        sa.Column('channel', sa.String(length=64), nullable=False),
        sa.Column('matrix_version', sa.String(length=64), nullable=False),
        sa.Column('decision_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
        sa.Column('message', sa.JSON(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(), nullable=True),
        sa.Column('lease_owner', sa.String(length=64), nullable=True),
        sa.Column('lease_until', sa.DateTime(), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('sent_at', sa.DateTime(), nullable=True),
        sa.UniqueConstraint('dedupe_key', name='uq_alerts_dedupe'),
    )
    op.create_index('ix_alerts_status_due', 'alerts_outbox', ['status', 'next_attempt_at'])
    op.create_index('ix_alerts_ticket', 'alerts_outbox', ['vendor', 'ticket_id'])


def downgrade() -> None:
    op.drop_index('ix_alerts_ticket', table_name='alerts_outbox')
    op.drop_index('ix_alerts_status_due', table_name='alerts_outbox')
    op.drop_table('alerts_outbox')
