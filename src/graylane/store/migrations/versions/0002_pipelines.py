"""Pipelines: configs with version history, executions, stages, audit, trigger state.

Revision ID: 0002_pipelines
Revises: 0001_resources
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_pipelines"
down_revision = "0001_resources"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pipeline_configs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("application", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("updated_by", sa.String(255), nullable=False),
        sa.UniqueConstraint("application", "name", name="uq_pipeline_configs_app_name"),
    )
    op.create_table(
        "pipeline_config_versions",
        sa.Column("config_id", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("time", sa.BigInteger, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
    )
    op.create_table(
        "pipeline_executions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("pipeline_config_id", sa.String(64), nullable=False),
        sa.Column("application", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("build_time", sa.BigInteger, nullable=False),
        sa.Column("start_time", sa.BigInteger),
        sa.Column("end_time", sa.BigInteger),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_index("ix_pipeline_executions_pipeline_config_id", "pipeline_executions", ["pipeline_config_id"])
    op.create_index("ix_pipeline_executions_status", "pipeline_executions", ["status"])
    op.create_table(
        "pipeline_stages",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("execution_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("ref_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_index("ix_pipeline_stages_execution_id", "pipeline_stages", ["execution_id"])
    op.create_table(
        "pipeline_audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("execution_id", sa.String(64), nullable=False),
        sa.Column("time", sa.BigInteger, nullable=False),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("stage_id", sa.String(64)),
        sa.Column("details", sa.Text, nullable=False),
    )
    op.create_index("ix_pipeline_audit_execution_id", "pipeline_audit", ["execution_id"])
    op.create_table(
        "pipeline_trigger_state",
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("last_fired", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for name in ("pipeline_trigger_state", "pipeline_audit", "pipeline_stages", "pipeline_executions",
                 "pipeline_config_versions", "pipeline_configs"):
        op.drop_table(name)
