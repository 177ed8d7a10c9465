"""The EnvoyFilter subset the local data plane serves: Envoy's local_ratelimit token bucket (docs/dataplane.md).

`compile_envoy_filter` turns one EnvoyFilter into rate-limit entries (raises ValidationError for anything
else); `listener_rate_limit` picks the entry that applies to a listener's workload.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from graylane.errors import ValidationError
from graylane.mesh.config_base import labels_match, meta, parse_duration, where_of

LOCAL_RATELIMIT = "envoy.filters.http.local_ratelimit"
LOCAL_RATELIMIT_TYPE = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"


def _rate_limit_from(value: Mapping[str, Any], where: str) -> dict[str, Any]:
    if value.get("@type") == "type.googleapis.com/udpa.type.v1.TypedStruct" or "type_url" in value:
        if value.get("type_url") != LOCAL_RATELIMIT_TYPE:
            raise ValidationError(f"unsupported typed_config type_url {value.get('type_url')!r}", where=where,
                                  hint="only local_ratelimit is supported (docs/dataplane.md)")
        value = value.get("value") or {}
    elif value.get("@type") not in (None, LOCAL_RATELIMIT_TYPE):
        raise ValidationError(f"unsupported typed_config @type {value.get('@type')!r}", where=where,
                              hint="only local_ratelimit is supported (docs/dataplane.md)")
    out: dict[str, Any] = {}
    tb = value.get("token_bucket")
    if tb:
        if not tb.get("max_tokens"):
            raise ValidationError("token_bucket.max_tokens is required and > 0", where=where)
        out["max_tokens"] = int(tb["max_tokens"])
        out["tokens_per_fill"] = int(tb.get("tokens_per_fill", 1))
        out["fill_interval_s"] = parse_duration(tb.get("fill_interval", "1s"), f"{where}.token_bucket")
    for key in ("filter_enabled", "filter_enforced"):
        if value.get(key):
            dv = value[key].get("default_value") or {}
            denom = {"HUNDRED": 100, "TEN_THOUSAND": 10_000, "MILLION": 1_000_000}[dv.get("denominator", "HUNDRED")]
            out[key] = 100.0 * int(dv.get("numerator", 0)) / denom
    headers = []
    for h in value.get("response_headers_to_add") or ():
        hh = h.get("header") or {}
        headers.append([str(hh.get("key", "")).lower(), str(hh.get("value", ""))])
    if headers:
        out["response_headers"] = headers
    return out


def compile_envoy_filter(res: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The accepted EnvoyFilter subset: Envoy's local_ratelimit on HTTP_FILTER (+ optional HTTP_ROUTE config)."""
    name, ns = meta(res)
    spec = res.get("spec") or {}
    selector = dict((spec.get("workloadSelector") or {}).get("labels") or {})
    per_context: dict[str, dict[str, Any]] = {}
    for i, patch in enumerate(spec.get("configPatches") or ()):
        where = where_of(res, f"spec.configPatches[{i}]")
        apply_to = patch.get("applyTo")
        context = (patch.get("match") or {}).get("context", "ANY")
        if context not in ("SIDECAR_INBOUND", "SIDECAR_OUTBOUND", "GATEWAY", "ANY"):
            raise ValidationError(f"unsupported match.context {context!r}", where=where)
        value = (patch.get("patch") or {}).get("value") or {}
        if apply_to == "HTTP_FILTER":
            if value.get("name") != LOCAL_RATELIMIT:
                raise ValidationError(f"unsupported HTTP filter {value.get('name')!r}", where=where,
                                      hint=f"only {LOCAL_RATELIMIT} is supported (docs/dataplane.md)")
            per_context.setdefault(context, {}).update(_rate_limit_from(value.get("typed_config") or {}, where))
        elif apply_to == "HTTP_ROUTE":
            tpfc = value.get("typed_per_filter_config") or {}
            if set(tpfc) - {LOCAL_RATELIMIT} or not tpfc:
                raise ValidationError(f"unsupported HTTP_ROUTE patch (filters {sorted(tpfc)})", where=where,
                                      hint=f"only typed_per_filter_config for {LOCAL_RATELIMIT} is supported")
            per_context.setdefault(context, {}).update(_rate_limit_from(tpfc[LOCAL_RATELIMIT], where))
        else:
            raise ValidationError(f"unsupported applyTo {apply_to!r}", where=where,
                                  hint="only HTTP_FILTER/HTTP_ROUTE patches for local_ratelimit (docs/dataplane.md)")
    out = []
    for context, rl in per_context.items():
        if "max_tokens" not in rl:
            raise ValidationError("local_ratelimit needs a token_bucket", where=where_of(res, "spec.configPatches"))
        out.append({"name": f"{ns}/{name}", "namespace": ns, "selector": selector, "context": context,
                    "filter_enabled": rl.get("filter_enabled", 0.0), "filter_enforced": rl.get("filter_enforced", 0.0),
                    **{k: v for k, v in rl.items() if k not in ("filter_enabled", "filter_enforced")}})
    return out


def listener_rate_limit(rate_limits: Iterable[dict[str, Any]], contexts: tuple[str, ...], namespace: str,
                        labels: Mapping[str, str]) -> dict[str, Any] | None:
    for rl in rate_limits:
        if rl["context"] not in contexts:
            continue
        # An EnvoyFilter applies in its own namespace, or everywhere from the root namespace istio-system.
        if rl["namespace"] not in (namespace, "istio-system"):
            continue
        if labels_match(rl["selector"], labels):
            return rl
    return None
