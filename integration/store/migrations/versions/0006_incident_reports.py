"""incident reports and corrective actions (integration.incident_report).

incident_reports: one row per ticket and incident (its first entry into a level with roles), the report as
JSON and as the Markdown posted on the ticket. corrective_actions: the Jira issues created for an incident,
with owner and due date, for `escalation incident actions`.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'incident_reports',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), primary_key=True, autoincrement=True),
        sa.Column('vendor', sa.String(length=16), nullable=False),
        sa.Column('ticket_id', sa.String(length=64), nullable=False),
        sa.Column('started_at', sa.DateTime(), nullable=False),
        sa.Column('built_at', sa.DateTime(), nullable=False),
        sa.Column('matrix_version', sa.String(length=64), nullable=False),
        sa.Column('report', sa.JSON(), nullable=False),
        sa.Column('markdown', sa.Text(), nullable=False),
        sa.UniqueConstraint('vendor', 'ticket_id', 'started_at', name='uq_incident_report'),
    )
    op.create_table(
        'corrective_actions',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), primary_key=True, autoincrement=True),
        sa.Column('vendor', sa.String(length=16), nullable=False),
        sa.Column('ticket_id', sa.String(length=64), nullable=False),
        sa.Column('issue_key', sa.String(length=64), nullable=False),
        sa.Column('summary', sa.Text(), nullable=False),
        sa.Column('owner', sa.String(length=200), nullable=True),
        sa.Column('owner_name', sa.String(length=200), nullable=True),
        sa.Column('due', sa.Date(), nullable=True),
        sa.Column('url', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.UniqueConstraint('vendor', 'ticket_id', 'issue_key', name='uq_corrective_action'),
    )
    op.create_index('ix_corrective_actions_ticket', 'corrective_actions', ['vendor', 'ticket_id'])


def downgrade() -> None:
    op.drop_index('ix_corrective_actions_ticket', table_name='corrective_actions')
    op.drop_table('corrective_actions')
    op.drop_table('incident_reports')
