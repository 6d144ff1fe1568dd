"""signing keys get an activation time (publish, then activate)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 10:00:00.000000

Keys made before this revision were used from the moment they were made.
"""

import sqlalchemy as sa
from alembic import op

import server.db.types

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('signing_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('activates_at', server.db.types.UTCDateTime(), nullable=True))
    op.execute("UPDATE signing_keys SET activates_at = created_at")


def downgrade() -> None:
    with op.batch_alter_table('signing_keys', schema=None) as batch_op:
        batch_op.drop_column('activates_at')
