"""The pipelines' SQLAlchemy Core tables (created by migration 0002_pipelines; mirrored here for queries)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

pipeline_configs = sa.Table(
    "pipeline_configs", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("application", sa.String(255), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Column("updated_by", sa.String(255), nullable=False),
    sa.UniqueConstraint("application", "name", name="uq_pipeline_configs_app_name"),
)

pipeline_config_versions = sa.Table(
    "pipeline_config_versions", metadata,
    sa.Column("config_id", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("time", sa.BigInteger, nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False, default=False),
)

pipeline_executions = sa.Table(
    "pipeline_executions", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("pipeline_config_id", sa.String(64), nullable=False, index=True),
    sa.Column("application", sa.String(255), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("status", sa.String(32), nullable=False, index=True),
    sa.Column("build_time", sa.BigInteger, nullable=False),
    sa.Column("start_time", sa.BigInteger),
    sa.Column("end_time", sa.BigInteger),
    sa.Column("body", sa.Text, nullable=False),
    # migration 0006_leases: which control-plane replica drives the execution (graylane.pipelines.leases)
    sa.Column("lease_owner", sa.String(255), index=True),
    sa.Column("lease_expires", sa.BigInteger),
    sa.Column("lease_token", sa.BigInteger, nullable=False, server_default="0"),
)

pipeline_stages = sa.Table(
    "pipeline_stages", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("execution_id", sa.String(64), nullable=False, index=True),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("ref_id", sa.String(64), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
)

pipeline_audit = sa.Table(
    "pipeline_audit", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("execution_id", sa.String(64), nullable=False, index=True),
    sa.Column("time", sa.BigInteger, nullable=False),
    sa.Column("user", sa.String(255), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("stage_id", sa.String(64)),
    sa.Column("details", sa.Text, nullable=False),
)

pipeline_trigger_state = sa.Table(
    "pipeline_trigger_state", metadata,
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("last_fired", sa.BigInteger, nullable=False),
)

pipeline_commands = sa.Table(  # migration 0006_leases: commands for the replica that drives an execution
    "pipeline_commands", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("execution_id", sa.String(64), nullable=False, index=True),
    sa.Column("method", sa.String(64), nullable=False),
    sa.Column("arguments", sa.Text, nullable=False),
    sa.Column("sent_by", sa.String(255), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("result", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("applied_by", sa.String(255)),
)

pipeline_judgments = sa.Table(  # migration 0007_judgments: a manual judgment is recorded once per stage attempt
    "pipeline_judgments", metadata,
    sa.Column("execution_id", sa.String(64), primary_key=True),
    sa.Column("stage_id", sa.String(64), primary_key=True),
    sa.Column("attempt", sa.Integer, primary_key=True),
    sa.Column("judged_by", sa.String(255), nullable=False),
    sa.Column("judged_at", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("idempotency_key", sa.String(200)),
    sa.Column("request", sa.Text, nullable=False),
)

pipeline_start_keys = sa.Table(  # migration 0008_start_keys: a manual start recorded once per Idempotency-Key
    "pipeline_start_keys", metadata,
    sa.Column("user", sa.String(255), primary_key=True),
    sa.Column("idempotency_key", sa.String(200), primary_key=True),
    sa.Column("request", sa.String(64), nullable=False),
    sa.Column("pipeline_config_id", sa.String(64), nullable=False),
    sa.Column("execution_id", sa.String(64), nullable=False, index=True),
    sa.Column("created_at", sa.BigInteger, nullable=False, index=True),
)
