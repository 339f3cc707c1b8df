"""the installing user's locale, default currency and time zone (from /users/me)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 08:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: installations made before this are filled in by their next install.
    with op.batch_alter_table('installations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('locale', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('default_currency', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('timezone_name', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('installations', schema=None) as batch_op:
        batch_op.drop_column('timezone_name')
        batch_op.drop_column('default_currency')
        batch_op.drop_column('locale')
