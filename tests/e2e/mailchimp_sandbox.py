"""Serve the Mailchimp sandbox in a process of its own, for end-to-end tests.

    python tests/e2e/mailchimp_sandbox.py [--seed N] [--size N] [--port P]

Prints ``mailchimp <base url>`` once the server listens, then serves until SIGTERM or
SIGINT. Unlike ``crmhub sandbox`` it lets the test choose the audience's size. Everything a
test needs is reachable over HTTP: the API under ``/3.0/``, the controls under
``/_mailchimp/`` and ``/_sandbox/``.
"""

from __future__ import annotations

import argparse
import signal
import threading

from connectors.mailchimp.sandbox import create_sandbox
from hub.sandbox import serve_sandbox


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=50)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    url, server = serve_sandbox(create_sandbox(seed=args.seed, size=args.size), port=args.port)
    try:
        print(f"mailchimp {url}", flush=True)
        done.wait()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
