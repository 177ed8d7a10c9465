"""`python -m graylane.mesh.proxy --admin-port N`: the data plane without loading the whole CLI (lower RSS).

Same flags as `graylane proxy`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m graylane.mesh.proxy", description=__doc__)
    ap.add_argument("--admin-port", type=int, required=True)
    ap.add_argument("--admin-host", default="127.0.0.1")
    ap.add_argument("--state-dir", default=None)
    ap.add_argument("--log-level", default="info")
    args = ap.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from graylane.mesh.proxy.admin import run

    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    try:
        runner(run(args.admin_host, args.admin_port, args.state_dir))
    except OSError as exc:
        print(f"error: {args.admin_host}:{args.admin_port}: cannot start the data plane: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
