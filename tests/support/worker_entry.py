"""The product's `escalation worker` / `escalation serve`, built with a test double in place of the vendor
connectors: the process tests and bench/bench_timers.py start these instead of switching hooks on in
product code.

    python -m tests.support.worker_entry --vendor-dir DIR [--helpdesk fake|two-update]
        [--fetch-delay S] [--apply-delay S] [--between-updates S] worker [--concurrency N]
    python -m tests.support.worker_entry --vendor-dir DIR ... serve [--host H] [--port P] [--web-concurrency N]

Every vendor is served by one connector over the FileStore in DIR (tests/support/fake_connector.py), which
the test reads to see what reached the "vendor". The delays live in that connector: `--fetch-delay` holds
a pass after it claimed its events (before it reads the ticket), `--apply-delay` between the vendor write
and the pass's final commit, `--between-updates` between the two-update helpdesk's two updates. Settings
(database, queue, matrix, lease...) come from the environment, as for the real commands. `serve` starts
its worker child through this module too, with the same options.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

from connectors.base import Connector
from tests.support.fake_connector import FakeConnector, FileStore
from tests.support.two_update_helpdesk import TwoUpdateHelpdesk

MODULE = "tests.support.worker_entry"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vendor-dir", required=True, help="FileStore directory shared with the test")
    parser.add_argument("--helpdesk", choices=("fake", "two-update"), default="fake")
    parser.add_argument("--fetch-delay", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--apply-delay", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--between-updates", type=float, default=0.0, metavar="SECONDS")
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker")
    worker.add_argument("--concurrency", type=int, default=None)
    serve = commands.add_parser("serve")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    serve.add_argument("--web-concurrency", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "2")))
    return parser


def connector_factory(args: argparse.Namespace) -> Callable[[str], Connector]:
    store = FileStore(args.vendor_dir)

    def build(vendor: str) -> Connector:
        if args.helpdesk == "two-update":
            return TwoUpdateHelpdesk(vendor, store=store, fetch_delay=args.fetch_delay, apply_delay=args.apply_delay,
                                     between_updates_delay=args.between_updates)
        return FakeConnector(vendor, store=store, fetch_delay=args.fetch_delay, apply_delay=args.apply_delay)

    return build


def _options(args: argparse.Namespace) -> list[str]:
    return ["--vendor-dir", args.vendor_dir, "--helpdesk", args.helpdesk, "--fetch-delay", str(args.fetch_delay),
            "--apply-delay", str(args.apply_delay), "--between-updates", str(args.between_updates)]


def main(argv: list[str] | None = None) -> None:
    import click

    from cli.service_commands import process_settings, run_serve, run_worker

    args = _parser().parse_args(argv)
    factory = connector_factory(args)
    try:
        settings = process_settings()
        if args.command == "worker":
            run_worker(settings, args.concurrency, connector_factory=factory)
        else:
            run_serve(settings, args.host, args.port, args.web_concurrency, connector_factory=factory,
                      worker_command=[sys.executable, "-m", MODULE, *_options(args), "worker"])
    except click.ClickException as exc:  # what `escalation` itself would print and exit with
        exc.show()
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
