"""snapshots: the ticket each pass decided on (integration.snapshots), for `escalation replay`.

One row per pass: the connector's normalized ticket as zlib-compressed compact JSON (no credentials), the
pass's time, trigger and matrix version, and the decision row it wrote. Pruned after
SNAPSHOT_RETENTION_DAYS by the worker's periodic jobs.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'snapshots',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), primary_key=True, autoincrement=True),
        sa.Column('vendor', sa.String(length=16), nullable=False),
        sa.Column('ticket_id', sa.String(length=64), nullable=False),
        sa.Column('taken_at', sa.DateTime(), nullable=False),
        sa.Column('trigger', sa.String(length=80), nullable=False),
        sa.Column('matrix_version', sa.String(length=64), nullable=False),
        sa.Column('decision_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
        sa.Column('dry_run', sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column('ticket', sa.LargeBinary(), nullable=False),
    )
    op.create_index('ix_snapshots_ticket', 'snapshots', ['vendor', 'ticket_id', 'taken_at'])
    op.create_index('ix_snapshots_taken_at', 'snapshots', ['taken_at'])


def downgrade() -> None:
    op.drop_index('ix_snapshots_taken_at', table_name='snapshots')
    op.drop_index('ix_snapshots_ticket', table_name='snapshots')
    op.drop_table('snapshots')
