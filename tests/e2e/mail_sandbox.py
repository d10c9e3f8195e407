"""Serve the Gmail or Outlook sandbox in a process of its own, for end-to-end tests.

    python tests/e2e/mail_sandbox.py gmail|outlook [--seed N] [--size N] [--contacts N]
                                                    [--unchecked] [--tls-folder DIR]

Prints ``<name> <base url>`` once the server listens, then serves until SIGTERM or SIGINT.
Everything a test needs is reachable over HTTP (``/_gmail/``, ``/_people/``,
``/_outlook/`` and ``/_sandbox/`` controls). ``--unchecked`` serves without holding the
traffic to the provider's description (only for the large crash test, whose traffic is the
same as the checked tests' but 100 times more of it).
"""

from __future__ import annotations

import argparse
import importlib
import signal
import threading
from pathlib import Path

from hub.sandbox import serve_sandbox


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=["gmail", "outlook"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=50)
    parser.add_argument("--contacts", type=int, default=10)
    parser.add_argument("--unchecked", action="store_true")
    parser.add_argument("--tls-folder", help="outlook: where its certificate is written")
    args = parser.parse_args()
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    module = importlib.import_module(f"connectors.{args.name}.sandbox")
    options = {"tls_folder": Path(args.tls_folder)} if args.tls_folder else {}
    app = module.create_sandbox(
        seed=args.seed,
        size=args.size,
        contacts=args.contacts,
        validate=not args.unchecked,
        **options,
    )
    url, server = serve_sandbox(app)
    try:
        print(f"{args.name} {url}", flush=True)
        done.wait()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
