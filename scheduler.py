"""Launch the crmhub daemon: ``python scheduler.py [--config FILE]`` is ``crmhub up``.

A thin launcher; the daemon lives in :mod:`hub.daemon`, the scheduled syncs in
:mod:`hub.sync_scheduler`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scheduler.py", description="Run the crmhub daemon.")
    parser.add_argument("--config", "-c", help="configuration file (default: ./crmhub.toml)")
    parser.add_argument("--host", help="listen address (default: [hub] http_host)")
    parser.add_argument("--port", type=int, help="listen port (default: [hub] http_port)")
    parser.add_argument(
        "--log-json",
        dest="log_json",
        action="store_const",
        const=True,
        default=None,
        help="log one JSON object a line (default unless stderr is a terminal)",
    )
    parser.add_argument(
        "--log-text", dest="log_json", action="store_const", const=False, help="log readable lines"
    )
    parser.add_argument("--log-level", default="info", help="debug, info, warning, error")
    args = parser.parse_args(argv)

    from hub.config import load_config
    from hub.daemon import serve
    from hub.errors import CrmhubError

    try:
        config = load_config(args.config)
        asyncio.run(
            serve(
                config,
                host=args.host,
                port=args.port,
                log_json=args.log_json,
                log_level=args.log_level,
            )
        )
    except CrmhubError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
