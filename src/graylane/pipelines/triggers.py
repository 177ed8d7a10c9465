"""Triggers: manual starts (parameters checked), webhooks (constraints, HMAC, replays: delivery ids and Alertmanager
alert groups), pipeline completion, cron.

Each builds Spinnaker's trigger map (type, user, parameters, artifacts, resolvedExpectedArtifacts) and
hands it to the executor; none of them writes execution state.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa

from graylane.errors import Conflict, GraylaneError, ValidationError
from graylane.pipelines import artifacts, params
from graylane.pipelines.execution import Execution
from graylane.pipelines.ids import derived_ulid
from graylane.pipelines.repository import ExecutionRepository, PipelineRepository, StartKeyTaken, start_request
from graylane.pipelines.status import ExecutionStatus

log = logging.getLogger(__name__)


class Starter(Protocol):
    """What triggers need of the scheduler (pipelines/executor.py): the stored pipelines and executions, its
    clock, and a way to start an execution."""

    @property
    def repo(self) -> ExecutionRepository: ...

    @property
    def pipelines(self) -> PipelineRepository: ...

    def now_ms(self) -> int: ...

    async def start_execution(self, config: dict[str, Any], trigger: dict[str, Any], *, user: str,
                              execution_id: str | None = None) -> Execution: ...


class SignatureMismatch(GraylaneError):
    """A webhook's HMAC signature is missing or wrong (the API answers 403)."""


def check_inputs(parameters: Any, artifacts: Any) -> None:
    """What any trigger brings (a manual start, a webhook's payload, CI): parameters as an object, artifacts as a
    list of objects; a ValidationError naming the field otherwise (hostile bodies get 422, never a crash)."""
    if parameters is not None and not isinstance(parameters, dict):
        raise ValidationError(f"must be an object of name -> value, got {type(parameters).__name__}",
                              where="parameters")
    if artifacts is not None and (not isinstance(artifacts, list) or not all(isinstance(a, dict) for a in artifacts)):
        raise ValidationError("must be a list of artifact objects", where="artifacts")


def build_trigger(config: dict[str, Any], trigger: dict[str, Any], executor: Starter | None = None) -> dict[str, Any]:
    """Fill parameter defaults, enforce required/options, bind expected artifacts."""
    check_inputs(trigger.get("parameters"), trigger.get("artifacts"))
    out = dict(trigger)
    where = f"pipeline {config.get('application')}/{config.get('name')} parameters"
    out["parameters"] = params.resolve(config.get("parameterConfig") or [], trigger.get("parameters") or {}, where)
    received = list(trigger.get("artifacts") or [])
    expected = list(config.get("expectedArtifacts") or [])
    asked = trigger.get("expectedArtifactIds")
    # A trigger binds the expected artifacts it names (orca's ArtifactUtils.resolveArtifacts; a name that cannot be
    # bound refuses the start). A manual start names none: orca then binds nothing; Graylane binds those that can
    # be bound (a sent artifact, a default, a prior one), so `pipeline run --artifact` works, and leaves the rest.
    optional = not asked and trigger.get("type") == "manual"
    wanted = set(asked or [e.get("id") for e in expected])
    expected = [e for e in expected if e.get("id") in wanted]
    prior: list[dict[str, Any]] = []
    if executor is not None and any(e.get("usePriorArtifact") for e in expected) and config.get("id"):
        for head in executor.repo.list(pipeline_config_id=config["id"], statuses=[ExecutionStatus.SUCCEEDED],
                                       limit=1):
            prior = (head.get("trigger") or {}).get("resolvedExpectedArtifacts") or []
    out["artifacts"] = received
    out["resolvedExpectedArtifacts"] = artifacts.bind_expected(expected, received, prior, optional=optional) \
        if expected else []
    return out


def _manual_trigger(executor: Starter, ref: str, *, user: str, parameters: dict[str, Any] | None,
                    artifacts_in: list[dict[str, Any]] | None,
                    application: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    config = executor.pipelines.get(ref, application=application)
    check_inputs(parameters, artifacts_in)
    params.check_declared(config, parameters)
    trigger = build_trigger(config, {"type": "manual", "user": user, "parameters": parameters or {},
                                     "artifacts": artifacts_in or []}, executor)
    return config, trigger


async def start_manual(executor: Starter, ref: str, *, user: str, parameters: dict[str, Any] | None = None,
                       artifacts_in: list[dict[str, Any]] | None = None, application: str | None = None) -> Execution:
    config, trigger = _manual_trigger(executor, ref, user=user, parameters=parameters, artifacts_in=artifacts_in,
                                      application=application)
    return await executor.start_execution(config, trigger, user=user)


_START_KEYS_PRUNE_MS = 3600 * 1000
_start_keys_pruned: dict[str, int] = {}  # engine url -> when its expired start keys were last deleted


async def start_manual_once(executor: Starter, ref: str, *, user: str, key: str,
                            parameters: dict[str, Any] | None = None,
                            artifacts_in: list[dict[str, Any]] | None = None,
                            application: str | None = None) -> tuple[Execution, bool]:
    """A manual start sent with an Idempotency-Key: (the execution, whether it was started before).

    The first start with `user`'s key records it with the execution (pipeline_start_keys, one transaction;
    the key is kept as `trigger.idempotencyKey`); a copy of it (the same pipeline, parameters and artifacts),
    sent to this replica or another, at once or within a day, answers that execution and starts nothing. The
    same key with another request is refused (409 naming the key). Keys older than a day are forgotten."""
    config, trigger = _manual_trigger(executor, ref, user=user, parameters=parameters, artifacts_in=artifacts_in,
                                      application=application)
    trigger["idempotencyKey"] = key
    repo, now = executor.repo, executor.now_ms()
    url = str(repo.engine.url)
    if now - _start_keys_pruned.get(url, 0) > _START_KEYS_PRUNE_MS:
        repo.prune_start_keys(now)
        _start_keys_pruned[url] = now
    request = start_request(str(config["id"]), trigger)
    for _ in range(2):
        earlier = repo.started_with_key(user, key, now)
        if earlier is not None:
            if earlier["request"] != request:
                what = "another pipeline" if earlier["pipeline_config_id"] != config["id"] else \
                    "other parameters or artifacts"
                raise Conflict(f"Idempotency-Key {key!r} was sent with another start ({what}); it started "
                               f"execution {earlier['execution_id']}",
                               where="Idempotency-Key header", hint="send a new Idempotency-Key with a new start")
            return repo.load(str(earlier["execution_id"])), True
        try:
            return await executor.start_execution(config, trigger, user=user), False
        except StartKeyTaken:
            continue  # a copy sent elsewhere at the same time won: answer its execution
    raise Conflict(f"Idempotency-Key {key!r}: the start it names could not be read", where="Idempotency-Key header",
                   hint="try again")


# ------------------------------------------------------------------ webhooks

def _payload_value(payload: Any, dotted: str) -> Any:
    node = payload
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _constraints_hold(constraints: dict[str, Any], payload: Any) -> bool:
    for key, pattern in (constraints or {}).items():
        value = _payload_value(payload, key)
        if value is None:
            return False
        try:
            if re.fullmatch(str(pattern), str(value)) is None:
                return False
        except re.error:
            if str(pattern) != str(value):
                return False
    return True


def _secret_of(trig: dict[str, Any]) -> tuple[bool, str | None]:
    """(whether the trigger demands a signature, its secret). A `secretEnv` naming an unset variable
    demands one that nothing can match: the trigger refuses every request, never accepts unsigned ones."""
    if trig.get("secretEnv"):
        return True, os.environ.get(str(trig["secretEnv"])) or None
    if trig.get("secret"):
        return True, str(trig["secret"])
    return False, None


def webhook_warnings(config: dict[str, Any]) -> list[str]:
    """What an import should say about the pipeline's webhook triggers (an unset `secretEnv`)."""
    out = []
    for i, trig in enumerate(config.get("triggers") or []):
        if isinstance(trig, dict) and trig.get("type") == "webhook" and trig.get("secretEnv") \
                and not os.environ.get(str(trig["secretEnv"])):
            out.append(f"pipeline {config.get('application')}/{config.get('name')} triggers[{i}] (webhook source "
                       f"{trig.get('source')!r}): secretEnv {trig['secretEnv']} is not set in the control plane's "
                       "environment; the trigger refuses every request until it is")
    return out


def signature_ok(secret: str, body: bytes, header: str | None, timestamp: str | None = None) -> bool:
    """GitHub-style `sha256=<hex HMAC of the raw body>` (the headers that carry it promise SHA-256, so
    any other algorithm is refused). With a timestamp the HMAC covers `<timestamp>.<raw body>`."""
    if not header:
        return False
    algo, _, given = header.partition("=")
    if algo.strip().lower() != "sha256":
        return False
    signed = f"{timestamp}.".encode() + body if timestamp is not None else body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given.strip().lower())


@dataclass(frozen=True)
class WebhookDelivery:
    """What the request says about itself: its signature, delivery id and timestamp headers."""

    signature: str | None = None
    delivery_id: str | None = None
    timestamp: str | None = None


@dataclass
class WebhookOutcome:
    executions: list[dict[str, Any]] = field(default_factory=list)
    duplicate: bool = False
    dedupe_key: str | None = None


_REFUSED = "webhook refused: signature does not match (or is missing)"
_REFUSED_HINT = ("sign the raw body with the trigger's secret: X-Hub-Signature-256: sha256=<hex HMAC-SHA256>; "
                 "with X-Graylane-Timestamp, sign `<timestamp>.<raw body>`")

deliveries_metadata = sa.MetaData()
webhook_deliveries = sa.Table(  # migration 0005_trust
    "webhook_deliveries", deliveries_metadata,
    sa.Column("source", sa.String(256), primary_key=True),
    sa.Column("delivery_key", sa.String(256), primary_key=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("executions", sa.Text, nullable=False),
)


DELIVERY_RETENTION = timedelta(days=30)  # replays older than this start again (GitHub redelivers up to 3 days)
_PRUNE_EVERY = timedelta(hours=1)
_pruned: dict[str, datetime] = {}  # engine url -> when its old deliveries were last deleted


def prune_deliveries(engine: sa.Engine, now: datetime | None = None) -> int:
    """Forget deliveries older than DELIVERY_RETENTION (the table would otherwise grow with every delivery);
    returns how many were deleted."""
    now = now or datetime.now(UTC)
    with engine.begin() as conn:
        result = conn.execute(webhook_deliveries.delete().where(
            webhook_deliveries.c.received_at < now - DELIVERY_RETENTION))
    _pruned[str(engine.url)] = now
    return int(result.rowcount or 0)


def _claim(engine: sa.Engine, source: str, key: str) -> bool:
    """Record the delivery; False when it was recorded before (a replay). The primary key makes two
    concurrent copies race safely: one insert wins. At most once an hour, old deliveries are pruned first."""
    now = datetime.now(UTC)
    last = _pruned.get(str(engine.url))
    if last is None or now - last > _PRUNE_EVERY:
        prune_deliveries(engine, now)
    try:
        with engine.begin() as conn:
            conn.execute(webhook_deliveries.insert().values(source=source[:256], delivery_key=key[:256],
                                                            received_at=now, executions="[]"))
    except sa.exc.IntegrityError:
        return False
    return True


def _remember(engine: sa.Engine, source: str, key: str, started: list[dict[str, Any]]) -> None:
    with engine.begin() as conn:
        conn.execute(webhook_deliveries.update().where(webhook_deliveries.c.source == source[:256],
                                                       webhook_deliveries.c.delivery_key == key[:256])
                     .values(executions=json.dumps(started)))


def alertmanager_key(payload: Any) -> str | None:
    """The dedupe key of an Alertmanager webhook notification (`version` "4" with `groupKey`, `status` and
    `alerts[].fingerprint`/`startsAt`), None for any other body.

    `alertmanager:` + hex SHA-256 of the compact JSON of `[groupKey, status, truncatedAlerts, alerts]`, the
    alerts as sorted `[fingerprint, status, startsAt, endsAt]` lists with endsAt "" unless the alert is
    resolved. What Alertmanager changes between copies of one event is left out: its retries, its
    `repeat_interval` re-sends, the copy each HA peer sends (another `externalURL`) and a firing alert's
    moving `endsAt` are the same key; a new alert in the group, an alert that fired again (a new
    `startsAt`) or resolved, and the group's resolved notification are new keys."""
    if not isinstance(payload, dict) or str(payload.get("version")) != "4":
        return None
    group, status, alerts = payload.get("groupKey"), payload.get("status"), payload.get("alerts")
    if not isinstance(group, str) or status not in ("firing", "resolved") or not isinstance(alerts, list):
        return None
    seen: list[list[str]] = []
    for alert in alerts:
        if not isinstance(alert, dict):
            return None
        fingerprint, state, starts = alert.get("fingerprint"), alert.get("status"), alert.get("startsAt")
        if not isinstance(fingerprint, str) or not isinstance(starts, str):
            return None
        ends = alert.get("endsAt") if state == "resolved" else ""
        seen.append([fingerprint, str(state or ""), starts, str(ends or "")])
    truncated = payload.get("truncatedAlerts")
    canonical = [group, status, truncated if isinstance(truncated, int) else 0, sorted(seen)]
    digest = hashlib.sha256(json.dumps(canonical, separators=(",", ":")).encode()).hexdigest()
    return f"alertmanager:{digest}"


def _timestamp_ok(timestamp: str, window_s: float, now_s: float) -> bool:
    try:
        sent = float(timestamp)
    except ValueError:
        return False
    return abs(now_s - sent) <= window_s


async def handle_webhook(executor: Starter, source: str, payload: Any, raw_body: bytes,
                         delivery: WebhookDelivery | None = None, user: str = "webhook", *,
                         window_s: float = 300.0) -> WebhookOutcome:
    """Start every pipeline whose enabled webhook trigger has this `source` and whose constraints hold.

    A trigger with a secret (`secret`, or `secretEnv` naming a set variable) starts only on a matching
    signature. A request is processed once per dedupe key: the delivery id (X-GitHub-Delivery,
    X-Graylane-Delivery or Idempotency-Key) when sent, else for an Alertmanager notification the key of its
    alert group and alerts (`alertmanager_key`, signed or not), else for a signed request the SHA-256 of the
    raw body; a copy with a key already seen (by any replica: `webhook_deliveries`) starts nothing. Other
    unsigned requests have no key. A timestamp, when sent, must be within
    `window_s` of now. Refusals never name the pipelines (the caller is not authenticated)."""
    delivery = delivery or WebhookDelivery()
    accepted: list[tuple[dict[str, Any], dict[str, Any]]] = []
    refused = False
    signed = False
    if not isinstance(payload, dict):
        payload = {"body": payload}
    for config in executor.pipelines.list():
        if config.get("disabled"):
            continue
        for trig in config.get("triggers") or []:
            if trig.get("type") != "webhook" or trig.get("enabled", True) is False or trig.get("source") != source:
                continue
            if not _constraints_hold(trig.get("payloadConstraints") or {}, payload):
                continue
            needs_signature, secret = _secret_of(trig)
            if needs_signature:
                if secret is None:
                    log.warning("webhook %r: pipeline %s/%s refused a request: secretEnv %s is not set",
                                source, config.get("application"), config.get("name"), trig.get("secretEnv"))
                    refused = True
                    continue
                if not signature_ok(secret, raw_body, delivery.signature, delivery.timestamp):
                    refused = True
                    continue
                signed = True
            accepted.append((config, trig))
    if delivery.timestamp is not None and accepted \
            and not _timestamp_ok(delivery.timestamp, window_s, executor.now_ms() / 1000):
        raise SignatureMismatch("webhook refused: X-Graylane-Timestamp is outside the accepted window",
                                hint=f"send the current time in seconds; the window is {window_s:g}s")
    if refused and not accepted:
        raise SignatureMismatch(_REFUSED, hint=_REFUSED_HINT)
    outcome = WebhookOutcome()
    if delivery.delivery_id:
        outcome.dedupe_key = f"delivery:{delivery.delivery_id}"
    elif alert_key := alertmanager_key(payload):
        outcome.dedupe_key = alert_key
    elif signed:
        outcome.dedupe_key = f"sha256:{hashlib.sha256(raw_body).hexdigest()}"
    engine = executor.repo.engine
    if accepted and outcome.dedupe_key and not _claim(engine, source, outcome.dedupe_key):
        log.warning("webhook %r: delivery %s was processed before; nothing started", source, outcome.dedupe_key)
        outcome.duplicate = True
        return outcome
    for config, trig in accepted:
        trigger = {"type": "webhook", "source": source, "user": trig.get("runAsUser") or user,
                   "payload": payload, "parameters": payload.get("parameters") or {},
                   "artifacts": payload.get("artifacts") or [],
                   "expectedArtifactIds": trig.get("expectedArtifactIds")
                   or [e.get("id") for e in config.get("expectedArtifacts") or []]}
        try:
            full = build_trigger(config, trigger, executor)
            exe = await executor.start_execution(config, full, user=trigger["user"])
            outcome.executions.append({"pipeline": config["name"], "application": config["application"],
                                       "executionId": exe.id})
        except GraylaneError as exc:
            outcome.executions.append({"pipeline": config["name"], "application": config["application"],
                                       "error": str(exc)})
    if accepted and outcome.dedupe_key:
        _remember(engine, source, outcome.dedupe_key, outcome.executions)
    return outcome


# ------------------------------------------------------------------ pipeline triggers

_STATUS_WORDS = {"successful": {"SUCCEEDED"}, "failed": {"TERMINAL", "STOPPED"}, "canceled": {"CANCELED"}}


async def on_execution_complete(executor: Starter, exe: Execution) -> None:
    """Start pipelines whose `pipeline` trigger watches this one (status ∈ successful/failed/canceled)."""
    for config in executor.pipelines.list():
        if config.get("disabled"):
            continue
        for trig in config.get("triggers") or []:
            if trig.get("type") != "pipeline" or trig.get("enabled", True) is False:
                continue
            if trig.get("pipeline") not in (exe.pipeline_config_id, exe.name):
                continue
            wanted = set().union(*(_STATUS_WORDS.get(s, set()) for s in trig.get("status") or ["successful"]))
            if str(exe.status) not in wanted:
                continue
            trigger = {"type": "pipeline", "user": trig.get("runAsUser") or "pipeline-trigger",
                       "parentExecution": {"id": exe.id, "name": exe.name, "application": exe.application,
                                           "status": str(exe.status)},
                       "parameters": dict((exe.trigger or {}).get("parameters") or {})}
            # One id per (finished execution, triggered pipeline): a second start of the same pair (the hook run
            # again after a takeover between the completion and the hook) hits the primary key instead.
            child_id = derived_ulid(exe.end_time or executor.now_ms(), f"pipeline-trigger:{exe.id}:{config['id']}")
            try:
                full = build_trigger(config, trigger, executor)
                await executor.start_execution(config, full, user=trigger["user"], execution_id=child_id)
            except GraylaneError as exc:
                log.warning("pipeline trigger of %s/%s did not start: %s", config["application"], config["name"], exc)
            except sa.exc.IntegrityError:
                log.info("pipeline trigger of %s/%s: %s was started before", config["application"], config["name"],
                         child_id)


# ------------------------------------------------------------------ cron

def _field(spec: str, lo: int, hi: int, names: dict[str, int] | None = None) -> set[int]:
    out: set[int] = set()
    for part in spec.split(","):
        part = part.strip().upper()
        for name, num in (names or {}).items():
            part = part.replace(name, str(num))
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            step = int(step_text)
        if part in ("*", "?", ""):
            start, end = lo, hi
        elif "-" in part:
            a, b = part.split("-", 1)
            start, end = int(a), int(b)
        else:
            start = int(part)
            end = hi if step > 1 else start
        if start < lo or end > hi:
            raise ValidationError(f"cron field {spec!r} is outside {lo}..{hi}")
        out.update(range(start, end + 1, step))
    return out


_DOW = {"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}
_MON = {m: i + 1 for i, m in enumerate(("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT",
                                        "NOV", "DEC"))}


class Cron:
    """Unix 5-field or Quartz 6/7-field (seconds first, as Spinnaker writes them) cron expressions."""

    def __init__(self, expression: str) -> None:
        parts = expression.split()
        if len(parts) == 5:
            parts = ["0", *parts]
            quartz = False
        elif len(parts) in (6, 7):
            parts = parts[:6]
            quartz = True
        else:
            raise ValidationError(f"cron expression {expression!r} needs 5 (unix) or 6-7 (quartz) fields")
        self.seconds = _field(parts[0], 0, 59)
        self.minutes = _field(parts[1], 0, 59)
        self.hours = _field(parts[2], 0, 23)
        self.days = _field(parts[3], 1, 31)
        self.months = _field(parts[4], 1, 12, _MON)
        if quartz:  # quartz: 1=SUN..7=SAT
            self.weekdays = {(d - 1) % 7 for d in _field(parts[5], 1, 7, {k: v + 1 for k, v in _DOW.items()})}
        else:
            self.weekdays = {d % 7 for d in _field(parts[5], 0, 7, _DOW)}
        self.any_day = parts[3] in ("*", "?")
        self.any_weekday = parts[5] in ("*", "?")

    def matches(self, t: datetime) -> bool:
        if t.second not in self.seconds or t.minute not in self.minutes or t.hour not in self.hours:
            return False
        if t.month not in self.months:
            return False
        dom = t.day in self.days
        dow = (t.isoweekday() % 7) in self.weekdays
        if self.any_day and self.any_weekday:
            return True
        if self.any_day:
            return dow
        if self.any_weekday:
            return dom
        return dom or dow

    def fired_between(self, after: datetime, until: datetime) -> bool:
        """Whether a fire time lies in (after, until] (checked per second, at most one day back)."""
        t = max(after, until - timedelta(days=1)).replace(microsecond=0) + timedelta(seconds=1)
        while t <= until:
            if self.matches(t):
                return True
            t += timedelta(seconds=1)
        return False


async def cron_loop(executor: Starter, interval_s: float = 5.0) -> None:
    """Fire cron triggers; the last fire time per trigger is stored, so a restart neither skips nor repeats."""
    while True:
        with contextlib.suppress(Exception):
            await fire_due_crons(executor)
        await asyncio.sleep(interval_s)


async def fire_due_crons(executor: Starter) -> list[str]:
    now_ms = executor.now_ms()
    now = datetime.fromtimestamp(now_ms / 1000)
    started: list[str] = []
    for config in executor.pipelines.list():
        if config.get("disabled"):
            continue
        for i, trig in enumerate(config.get("triggers") or []):
            if trig.get("type") != "cron" or trig.get("enabled", True) is False:
                continue
            key = f"cron:{config['id']}:{trig.get('id') or i}"
            last = executor.repo.trigger_last_fired(key)
            if last is None:
                executor.repo.set_trigger_fired(key, now_ms)  # start counting from when we first saw it
                continue
            try:
                cron = Cron(str(trig.get("cronExpression")))
            except (ValidationError, ValueError) as exc:
                log.warning("cron trigger %s: %s", key, exc)
                continue
            if cron.fired_between(datetime.fromtimestamp(last / 1000), now):
                if not executor.repo.claim_trigger_fire(key, last, now_ms):
                    continue  # another control-plane replica fired it (pipelines/leases.py)
                trigger = {"type": "cron", "user": trig.get("runAsUser") or "cron",
                           "cronExpression": trig.get("cronExpression"), "parameters": {}}
                try:
                    full = build_trigger(config, trigger, executor)
                    exe = await executor.start_execution(config, full, user=trigger["user"])
                    started.append(exe.id)
                except GraylaneError as exc:
                    log.warning("cron trigger of %s/%s did not start: %s", config["application"], config["name"],
                                exc)
    return started
