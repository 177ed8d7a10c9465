"""The admin audit log: actions that erase records of their own (deleting an execution deletes its
execution audit), written here first, read by GET /api/v1/audit. Table from migration 0005_trust."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

metadata = sa.MetaData()
admin_audit = sa.Table(
    "admin_audit", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("subject", sa.String(256), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
)


def record(engine: Engine, *, actor: str, action: str, subject: str, detail: dict[str, Any]) -> None:
    with engine.begin() as conn:
        conn.execute(admin_audit.insert().values(time=datetime.now(UTC), actor=actor, action=action,
                                                 subject=subject, detail=json.dumps(detail, default=str)))


def entries(engine: Engine, limit: int = 100) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(admin_audit).order_by(admin_audit.c.id.desc()).limit(limit)).mappings().all()
    return [{"id": r["id"], "time": r["time"].isoformat().replace("+00:00", "Z") if r["time"].tzinfo
             else r["time"].isoformat() + "Z", "actor": r["actor"], "action": r["action"], "subject": r["subject"],
             "detail": json.loads(r["detail"])} for r in rows]
