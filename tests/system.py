"""System parts the suite needs (PostgreSQL, Prometheus, Chromium, git): found, or a decision to skip.

`make test` installs and starts these where it can (`scripts/test-system`). A test that needs a part that is
missing fails, naming the part and how to get it, unless the part is listed in `GRAYLANE_TEST_SKIP`
(comma-separated: `postgres,prometheus,chromium,git`): then it skips with one line saying so. A missing
system package never turns into a silent green skip.
"""

from __future__ import annotations

import os
import shutil

import pytest

SKIP_VARIABLE = "GRAYLANE_TEST_SKIP"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://graylane:graylane@127.0.0.1:5432/graylane_test"
HOW = {
    "postgres": "apt-get install postgresql and start it (make test does both)",
    "prometheus": "apt-get install prometheus (make test does)",
    "chromium": "apt-get install chromium (make test does)",
    "git": "apt-get install git (make test does)",
}


def skipped_on_purpose(part: str) -> bool:
    return part in {p.strip() for p in os.environ.get(SKIP_VARIABLE, "").split(",") if p.strip()}


def missing(part: str, detail: str) -> None:
    """Stop the test: skip when the run decided to go without `part`, otherwise fail naming what to do."""
    if skipped_on_purpose(part):
        pytest.skip(f"{part} is missing ({detail}); skipped on purpose by {SKIP_VARIABLE}")
    pytest.fail(f"{part} is missing ({detail}): {HOW.get(part, 'install it')}, "
                f"or set {SKIP_VARIABLE}={part} to skip these tests on purpose", pytrace=False)


def require_program(part: str, *programs: str) -> str:
    """The path of the first program, after checking every one of them is on PATH."""
    found = [shutil.which(p) for p in programs]
    absent = [p for p, f in zip(programs, found, strict=True) if f is None]
    if absent:
        missing(part, f"{', '.join(absent)} not on PATH")
    return str(found[0])


def postgres_url() -> str:
    """`GRAYLANE_TEST_POSTGRES_URL`, or the loopback server `make test` starts, when it answers."""
    url = os.environ.get("GRAYLANE_TEST_POSTGRES_URL")
    if url:
        return url
    if skipped_on_purpose("postgres"):
        pytest.skip(f"postgres is skipped on purpose by {SKIP_VARIABLE}")
    try:
        import sqlalchemy as sa

        engine = sa.create_engine(DEFAULT_POSTGRES_URL, connect_args={"connect_timeout": 2})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure to connect means "not there"
        missing("postgres", f"GRAYLANE_TEST_POSTGRES_URL is unset and {DEFAULT_POSTGRES_URL} did not answer: "
                            f"{type(exc).__name__}")
    return DEFAULT_POSTGRES_URL
