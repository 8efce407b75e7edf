"""decisions.parts: per-part delivery of a decision (fields, reply, note).

While the intent is `applying` it records what the vendor confirmed between two requests of one
decision; once closed, the outcome of each part (written / visible / resent / unconfirmed / ...), which
`escalation history` shows instead of assuming everything the decision held was written.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('decisions') as batch:
        batch.add_column(sa.Column('parts', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('decisions') as batch:
        batch.drop_column('parts')
