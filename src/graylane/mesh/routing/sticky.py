"""Sticky canary as a pure decision: which live destination a returning user keeps, and whether to set a cookie.

A VirtualService opts in with the `graylane.io/sticky` annotation (decoded into a `StickyPolicy`):

- cookie identity: the cookie holds the subset name. A request whose cookie names a destination that is still
  live (weight > 0) keeps it and gets no new cookie; any other request (no cookie, or its subset gone or at 0)
  follows the current weights and the proxy sets the cookie to the subset it got. Fresh users alone move the
  weighted split, so its exact counts hold for them, and the canary's share of users grows with its weight.
- header identity: a hash of the header's value picks a point in [0, total weight); destinations own consecutive
  ranges of it in a fixed order (by subset name). With two subsets, growing one weight only moves users from the
  other one to it, never back, so a user stays put as the canary grows. No header: the weights decide.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from graylane.mesh.routing.policies import StickyPolicy
from graylane.mesh.routing.rules import Destination


@dataclass(frozen=True, slots=True)
class StickyChoice:
    """`index` of the live destination to use (None: follow the weights); `set_cookie`: write the cookie."""

    index: int | None
    set_cookie: bool
    why: str


def subset_name(dest: Destination) -> str:
    return dest.subset or dest.host


def cookie_value(cookie_header: str, name: str) -> str | None:
    for part in cookie_header.split(";"):
        k, _, v = part.strip().partition("=")
        if k == name:
            return v.strip().strip('"')
    return None


def bucket(value: str, total: int) -> int:
    """A stable point in [0, total) for an identity value."""
    digest = int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8).digest(), "big")
    return digest * total >> 64


def header_pick(value: str, live: Sequence[Destination]) -> int:
    """The live destination owning `value`'s point, destinations ordered by subset name."""
    order = sorted(range(len(live)), key=lambda i: subset_name(live[i]))
    total = sum(live[i].weight for i in order)
    point = bucket(value, total)
    for i in order:
        point -= live[i].weight
        if point < 0:
            return i
    return order[-1]


def sticky_choice(policy: StickyPolicy, headers: Mapping[str, str], live: Sequence[Destination]) -> StickyChoice:
    """Where a request's identity sends it among the live destinations (weights > 0) of its route."""
    if policy.header:
        value = headers.get(policy.header)
        if not value:
            return StickyChoice(None, False, f"header {policy.header} absent: weights")
        i = header_pick(value, live)
        return StickyChoice(i, False, f"header {policy.header} -> {subset_name(live[i])}")
    held = cookie_value(headers.get("cookie", ""), policy.cookie)
    if held:
        for i, dest in enumerate(live):
            if subset_name(dest) == held:
                return StickyChoice(i, False, f"cookie {policy.cookie}={held} kept")
        return StickyChoice(None, True, f"cookie {policy.cookie}={held} is not live: weights")
    return StickyChoice(None, True, f"cookie {policy.cookie} absent: weights")
