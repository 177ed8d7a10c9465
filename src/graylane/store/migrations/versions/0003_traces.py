"""Spans recorded by the data plane, kept with bounded retention (graylane.mesh.telemetry.traces).

Revision ID: 0003_traces
Revises: 0002_pipelines
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_traces"
down_revision = "0002_pipelines"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trace_spans",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("span_id", sa.String(16), nullable=False),
        sa.Column("parent_span_id", sa.String(16), nullable=True),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("service", sa.String(253), nullable=False),
        sa.Column("start_us", sa.BigInteger, nullable=False),
        sa.Column("duration_us", sa.BigInteger, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
    )
    op.create_index("ix_trace_spans_trace_id", "trace_spans", ["trace_id"])
    op.create_index("ix_trace_spans_service", "trace_spans", ["service"])
    op.create_index("ix_trace_spans_start_us", "trace_spans", ["start_us"])


def downgrade() -> None:
    op.drop_table("trace_spans")
