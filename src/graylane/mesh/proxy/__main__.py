"""`python -m graylane.mesh.proxy --admin-port N`: the data plane without loading the whole CLI (lower RSS).

Same flags as `graylane proxy`.
"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m graylane.mesh.proxy", description=__doc__)
    ap.add_argument("--admin-port", type=int, required=True)
    ap.add_argument("--admin-host", default="127.0.0.1")
    ap.add_argument("--state-dir", default=None)
    ap.add_argument("--log-level", default="info")
    # Downstream timeouts in seconds (0 disables one); defaults as in ProxyServer.
    ap.add_argument("--idle-timeout", type=float, default=300.0, help="keep-alive connection without a request")
    ap.add_argument("--header-timeout", type=float, default=10.0, help="to receive a request's head (408)")
    ap.add_argument("--request-timeout", type=float, default=60.0, help="to receive a whole request (408)")
    ap.add_argument("--stream-idle-timeout", type=float, default=300.0,
                    help="without request bytes while a body is incomplete (408, flag SI)")
    ap.add_argument("--concurrency", type=int, default=None,
                    help="worker processes sharing every listening socket; default: the CPUs this process "
                         "may use; 1: one process, no workers")
    ap.add_argument("--standby-fd", type=int, default=None, help=argparse.SUPPRESS)  # the supervisor's warm standby
    args = ap.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from graylane.mesh.proxy.admin import run

    if args.standby_fd is not None:
        import os

        import graylane.mesh.proxy.server  # noqa: F401 (imported now, not once traffic waits)
        from graylane.mesh.proxy.handoff import await_activation

        if not await_activation(args.standby_fd, os.environ):
            return 0

    import uvloop

    from graylane.dataplane_contract import MAX_WORKERS
    from graylane.mesh.proxy.workers import WorkerFailed, default_concurrency, run_primary

    concurrency = default_concurrency() if args.concurrency is None else args.concurrency
    if not 1 <= concurrency <= MAX_WORKERS:
        print(f"error: --concurrency must be from 1 to {MAX_WORKERS}, got {concurrency}", file=sys.stderr)
        return 2
    timeouts = {"idle_timeout_s": args.idle_timeout, "header_timeout_s": args.header_timeout,
                "request_timeout_s": args.request_timeout, "stream_idle_timeout_s": args.stream_idle_timeout}
    runner = uvloop.run
    try:
        if concurrency == 1:  # today's shape exactly: one process serves and answers the admin port
            runner(run(args.admin_host, args.admin_port, args.state_dir, **timeouts))
        else:
            runner(run_primary(args.admin_host, args.admin_port, args.state_dir, concurrency, args.log_level,
                               **timeouts))
    except (OSError, WorkerFailed) as exc:
        print(f"error: {args.admin_host}:{args.admin_port}: cannot start the data plane: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
