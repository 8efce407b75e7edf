"""Metrics that keep dry run apart and compare CSAT around an incident.

- `milestones.dry_run`, `csat.dry_run`: set from the pass that wrote the row (like `decisions.dry_run`),
  so time-to-milestone and CSAT figures never mix what the service did with what it would have done.
  Rows written before this revision read as live (the server default), as `escalation metrics` counted them.
- `csat.organization`, `csat.requester`: whose rating it is (the ticket's organization; the requester's
  vendor id, else e-mail), so `integration.metrics.csat_around_incidents` can compare an organization's
  ratings before an incident with those after it. `ticket_state.requester` likewise for the incident
  side when the ticket has no organization. Older rows have NULL there and are left out of that view.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('milestones') as batch:
        batch.add_column(sa.Column('dry_run', sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table('csat') as batch:
        batch.add_column(sa.Column('dry_run', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column('organization', sa.String(length=200), nullable=True))
        batch.add_column(sa.Column('requester', sa.String(length=200), nullable=True))
    with op.batch_alter_table('ticket_state') as batch:
        batch.add_column(sa.Column('requester', sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('ticket_state') as batch:
        batch.drop_column('requester')
    with op.batch_alter_table('csat') as batch:
        batch.drop_column('requester')
        batch.drop_column('organization')
        batch.drop_column('dry_run')
    with op.batch_alter_table('milestones') as batch:
        batch.drop_column('dry_run')
