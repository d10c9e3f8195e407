"""Serve the Xero sandbox in a process of its own, for end-to-end tests.

    python tests/e2e/xero_sandbox.py [--seed N] [--size N] [--invoices N]

Prints ``xero <base url>`` once the server listens, then serves until SIGTERM or SIGINT.
Everything a test needs is reachable over HTTP (``/_xero/`` and ``/_sandbox/`` controls,
the OAuth server under ``/oauth/``).
"""

from __future__ import annotations

import argparse
import signal
import threading

from connectors.xero.sandbox import create_sandbox
from hub.sandbox import serve_sandbox


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=30)
    parser.add_argument("--invoices", type=int, default=20)
    args = parser.parse_args()
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    app = create_sandbox(seed=args.seed, size=args.size, invoices=args.invoices)
    url, server = serve_sandbox(app)
    try:
        print(f"xero {url}", flush=True)
        done.wait()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
