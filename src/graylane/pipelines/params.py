"""Parameters: the pipeline's `parameterConfig` at start, and a judgment's typed `customParamConfig`.

Values are stored as strings, as Spinnaker stores parameters (hence `#toInt(...)` in expressions).
"""

from __future__ import annotations

import math
from typing import Any

from graylane.errors import ValidationError

_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


def _options(pdef: dict[str, Any]) -> list[str]:
    out = []
    for opt in pdef.get("options") or []:
        out.append(str(opt.get("value") if isinstance(opt, dict) else opt))
    return out


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def check_value(pdef: dict[str, Any], raw: Any, where: str) -> str:
    """Validate one value against its definition; return it as a string."""
    name = pdef["name"]
    label = f"{where}.{name}"
    ptype = pdef.get("type") or ("enum" if pdef.get("hasOptions") and pdef.get("options") else "string")
    text = _as_text(raw).strip() if ptype != "string" else _as_text(raw)
    number: float | None = None
    if ptype == "int":
        try:
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError
            number = int(text)
        except ValueError:
            raise ValidationError(f"{label}: {text!r} is not an integer") from None
        text = str(int(number))
    elif ptype == "float":
        try:
            number = float(text)
        except ValueError:
            raise ValidationError(f"{label}: {text!r} is not a number") from None
        if not math.isfinite(number):
            raise ValidationError(f"{label}: {text!r} is not a finite number")
    elif ptype == "bool":
        low = text.lower()
        if low not in _TRUE | _FALSE:
            raise ValidationError(f"{label}: {text!r} is not true or false")
        text = "true" if low in _TRUE else "false"
    if number is not None:
        lo, hi = pdef.get("min"), pdef.get("max")
        if lo is not None and number < float(lo):
            raise ValidationError(f"{label}: {text} is below the minimum {lo}"
                                  + (f" (allowed {lo}..{hi})" if hi is not None else ""))
        if hi is not None and number > float(hi):
            raise ValidationError(f"{label}: {text} is above the maximum {hi}"
                                  + (f" (allowed {lo}..{hi})" if lo is not None else ""))
    options = _options(pdef)
    if (ptype == "enum" or pdef.get("hasOptions")) and options and text not in options:
        raise ValidationError(f"{label}: {text!r} is not one of the options {', '.join(options)}")
    return text


def resolve(defs: list[dict[str, Any]], supplied: dict[str, Any] | None, where: str,
            *, strict_unknown: bool = False) -> dict[str, str]:
    """Fill defaults, enforce `required` and options/types; supplied keys without a definition pass through."""
    supplied = dict(supplied or {})
    out: dict[str, Any] = {}
    known = {d["name"] for d in defs if isinstance(d, dict) and d.get("name")}
    if strict_unknown:
        extra = sorted(set(supplied) - known)
        if extra:
            raise ValidationError(f"{where}: unknown parameter(s) {', '.join(extra)}",
                                  hint=f"declared: {', '.join(sorted(known)) or 'none'}")
    for pdef in defs:
        name = pdef["name"]
        value = supplied.get(name)
        if value is None or (isinstance(value, str) and value == "" and pdef.get("required")):
            default = pdef.get("default")
            if default is not None and default != "":
                value = default
        if value is None or (isinstance(value, str) and value == ""):
            if pdef.get("required"):
                raise ValidationError(f"{where}.{name} is required",
                                      hint=pdef.get("description") or pdef.get("label"))
            out[name] = "" if value is None and pdef.get("default") is not None else value
            if out[name] is None:
                out[name] = pdef.get("default")
            continue
        out[name] = check_value(pdef, value, where)
    for key, value in supplied.items():
        if key not in known:
            out[key] = value
    return out


# Graylane's pipeline-level switch (Spinnaker has none: orca passes undeclared parameters through). Off by default,
# so a typo such as `-p canary_verison=v3` is refused instead of silently running with the default.
ALLOW_UNDECLARED = "allowUndeclaredParameters"


def check_declared(config: dict[str, Any], supplied: dict[str, Any] | None) -> None:
    """Refuse parameter names the pipeline's parameterConfig does not declare, unless the pipeline allows them."""
    if config.get(ALLOW_UNDECLARED) is True:
        return
    declared = [d["name"] for d in config.get("parameterConfig") or [] if isinstance(d, dict) and d.get("name")]
    extra = sorted(set(supplied or {}) - set(declared))
    if extra:
        raise ValidationError(
            f"pipeline {config.get('application')}/{config.get('name')} does not declare the parameter(s) "
            f"{', '.join(extra)}",
            hint=f"declared: {', '.join(declared) or 'none'}; to accept any name set "
                 f"\"{ALLOW_UNDECLARED}\": true in the pipeline")
