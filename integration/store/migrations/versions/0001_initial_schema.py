"""Initial schema: events, ticket_state, decisions, timers, watermarks, matrix_versions, milestones, csat, leases.

Timestamps are naive UTC (integration.store.db.UtcDateTime converts).

Revision ID: 0001
Revises: 
Create Date: 2026-11-27
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('csat',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('vendor', sa.String(length=16), nullable=False),
    sa.Column('ticket_id', sa.String(length=64), nullable=False),
    sa.Column('score_raw', sa.String(length=16), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('rated_at', sa.DateTime(), nullable=False),
    sa.Column('level', sa.String(length=64), nullable=True),
    sa.Column('issue_type', sa.String(length=64), nullable=True),
    sa.Column('escalated', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('vendor', 'ticket_id', 'rated_at', name='uq_csat')
    )
    op.create_table('decisions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('vendor', sa.String(length=16), nullable=False),
    sa.Column('ticket_id', sa.String(length=64), nullable=False),
    sa.Column('decided_at', sa.DateTime(), nullable=False),
    sa.Column('trigger', sa.String(length=80), nullable=False),
    sa.Column('from_level', sa.String(length=64), nullable=True),
    sa.Column('to_level', sa.String(length=64), nullable=True),
    sa.Column('direction', sa.String(length=8), nullable=True),
    sa.Column('issue_type', sa.String(length=64), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('rule_id', sa.String(length=80), nullable=True),
    sa.Column('matrix_version', sa.String(length=64), nullable=False),
    sa.Column('decision', sa.JSON(), nullable=False),
    sa.Column('state_after', sa.JSON(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('api_result', sa.JSON(), nullable=True),
    sa.Column('writes', sa.Integer(), nullable=False),
    sa.Column('dry_run', sa.Boolean(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.create_index('ix_decisions_status', ['status'], unique=False)
        batch_op.create_index('ix_decisions_ticket', ['vendor', 'ticket_id', 'decided_at'], unique=False)

    op.create_table('events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('vendor', sa.String(length=16), nullable=False),
    sa.Column('ticket_id', sa.String(length=64), nullable=False),
    sa.Column('event_type', sa.String(length=80), nullable=False),
    sa.Column('delivery_id', sa.String(length=200), nullable=True),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('actor_id', sa.String(length=64), nullable=True),
    sa.Column('occurred_at', sa.DateTime(), nullable=True),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.Column('payload', sa.LargeBinary(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(), nullable=True),
    sa.Column('lease_owner', sa.String(length=64), nullable=True),
    sa.Column('lease_until', sa.DateTime(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('processed_at', sa.DateTime(), nullable=True),
    sa.Column('decision_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('vendor', 'content_hash', name='uq_events_content'),
    sa.UniqueConstraint('vendor', 'delivery_id', name='uq_events_delivery')
    )
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index('ix_events_status_lease', ['status', 'lease_until'], unique=False)
        batch_op.create_index('ix_events_ticket_status', ['vendor', 'ticket_id', 'status'], unique=False)

    op.create_table('leases',
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('owner', sa.String(length=64), nullable=False),
    sa.Column('until', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('matrix_versions',
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('loaded_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('version')
    )
    op.create_table('milestones',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('vendor', sa.String(length=16), nullable=False),
    sa.Column('ticket_id', sa.String(length=64), nullable=False),
    sa.Column('level', sa.String(length=64), nullable=False),
    sa.Column('issue_type', sa.String(length=64), nullable=True),
    sa.Column('clock', sa.String(length=32), nullable=False),
    sa.Column('entered_level_at', sa.DateTime(), nullable=False),
    sa.Column('met_at', sa.DateTime(), nullable=False),
    sa.Column('elapsed_seconds', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('vendor', 'ticket_id', 'level', 'entered_level_at', 'clock', name='uq_milestone')
    )
    op.create_table('ticket_state',
    sa.Column('vendor', sa.String(length=16), nullable=False),
    sa.Column('ticket_id', sa.String(length=64), nullable=False),
    sa.Column('state', sa.JSON(), nullable=False),
    sa.Column('level', sa.String(length=64), nullable=True),
    sa.Column('entered_level_at', sa.DateTime(), nullable=True),
    sa.Column('matrix_version', sa.String(length=64), nullable=True),
    sa.Column('rule_id', sa.String(length=80), nullable=True),
    sa.Column('bypassed', sa.Boolean(), nullable=False),
    sa.Column('pending_level', sa.String(length=64), nullable=True),
    sa.Column('data_requested', sa.JSON(), nullable=False),
    sa.Column('milestones', sa.JSON(), nullable=False),
    sa.Column('last_public_update_at', sa.DateTime(), nullable=True),
    sa.Column('issue_type', sa.String(length=64), nullable=True),
    sa.Column('organization', sa.String(length=200), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=True),
    sa.Column('priority', sa.String(length=16), nullable=True),
    sa.Column('satisfaction', sa.String(length=16), nullable=True),
    sa.Column('escalated', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=True),
    sa.Column('first_seen_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('vendor', 'ticket_id')
    )
    op.create_table('timers',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('vendor', sa.String(length=16), nullable=False),
    sa.Column('ticket_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('clock', sa.String(length=32), nullable=False),
    sa.Column('level', sa.String(length=64), nullable=False),
    sa.Column('due_at', sa.DateTime(), nullable=False),
    sa.Column('matrix_version', sa.String(length=64), nullable=True),
    sa.Column('fraction', sa.Float(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('fired_at', sa.DateTime(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('vendor', 'ticket_id', 'kind', 'clock', 'level', 'due_at', name='uq_timers_spec')
    )
    with op.batch_alter_table('timers', schema=None) as batch_op:
        batch_op.create_index('ix_timers_status_due', ['status', 'due_at'], unique=False)
        batch_op.create_index('ix_timers_ticket', ['vendor', 'ticket_id', 'status'], unique=False)

    op.create_table('watermarks',
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )


def downgrade() -> None:
    op.drop_table('watermarks')
    with op.batch_alter_table('timers', schema=None) as batch_op:
        batch_op.drop_index('ix_timers_ticket')
        batch_op.drop_index('ix_timers_status_due')

    op.drop_table('timers')
    op.drop_table('ticket_state')
    op.drop_table('milestones')
    op.drop_table('matrix_versions')
    op.drop_table('leases')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_ticket_status')
        batch_op.drop_index('ix_events_status_lease')

    op.drop_table('events')
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.drop_index('ix_decisions_ticket')
        batch_op.drop_index('ix_decisions_status')

    op.drop_table('decisions')
    op.drop_table('csat')
