"""``crmhub up`` (the daemon) and ``crmhub sandbox`` (fake providers on loopback)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import typer

from auth.credentials import VaultAuth
from hub.cli.app import app, console, fail, get_config, run, state


@app.command()
def up(
    host: str | None = typer.Option(
        None, "--host", help="Listen address (default: [hub] http_host)."
    ),
    port: int | None = typer.Option(None, "--port", help="Listen port (default: [hub] http_port)."),
    config: Path | None = typer.Option(
        None,
        "--config",
        "-c",
        help="Configuration file (default: $CRMHUB_CONFIG or ./crmhub.toml).",
    ),
    log_json: bool | None = typer.Option(
        None, "--log-json/--log-text", help="Log format (default: JSON unless on a terminal)."
    ),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
) -> None:
    """Run the hub: webhook server, scheduled syncs and the inbox, until SIGTERM or Ctrl-C."""
    from hub.daemon import serve

    if config is not None:
        state.config_path = config
    cfg = get_config()
    run(
        lambda: serve(
            cfg, host=host, port=port, log_json=log_json, log_level=log_level, auth=VaultAuth()
        )
    )


@app.command()
def sandbox(
    names: list[str] = typer.Argument(
        None, help="Connectors (or declaration files) to serve (default: all with a sandbox)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the fake data and the fault RNG."),
    port_base: int = typer.Option(
        8800, "--port-base", help="First port; each further sandbox takes the next (0: any free)."
    ),
    size: int = typer.Option(None, "--size", min=0, help="How many fake records to seed."),
) -> None:
    """Serve the sandboxes (fake providers) of installed connectors on 127.0.0.1."""
    from hub.sandbox import find_sandboxes, serve_sandbox

    available = find_sandboxes()
    for name in names or []:
        if name.endswith(".toml"):  # a declaration file: its generated sandbox
            from hub.rest.plugin import file_sandbox

            available[name] = file_sandbox(name)
    wanted = names or sorted(n for n, info in available.items() if info.factory is not None)
    unknown = [n for n in wanted if n not in available]
    if unknown:
        known = ", ".join(sorted(available)) or "none installed"
        raise fail(f"no sandbox for {', '.join(unknown)} (sandboxes: {known})")
    if not wanted:
        raise fail("no installed connector ships a sandbox")
    servers = []
    stop = _stop_on_signal()  # before the first address is printed: a signal may follow it
    try:
        for i, name in enumerate(wanted):
            info = available[name]
            if info.factory is None:
                raise fail(f"the {name} sandbox is broken: {info.error}")
            port = port_base + i if port_base else 0
            try:
                options = {"seed": seed} if size is None else {"seed": seed, "size": size}
                served = info.factory(**options)
                url, server = serve_sandbox(served, port=port)
            except OSError as exc:
                raise fail(
                    f"cannot serve the {name} sandbox on 127.0.0.1:{port}: "
                    f"{exc.strerror or exc}; choose other ports with --port-base P "
                    "(each further sandbox takes the next port; 0 takes free ones)"
                ) from None
            servers.append(server)
            console.print(f"{name}\t{url}", highlight=False, soft_wrap=True)
            for line in served.credentials:  # what a first request must send
                console.print(f"  {name} {line}", style="dim", markup=False, soft_wrap=True)
            if server.tls:  # served over HTTPS: clients trust its certificate
                console.print(f"[dim]  {name} certificate: {server.tls[0]}[/]", highlight=False)
        console.print("[dim]Ctrl-C to stop[/]")
        stop.wait()
    finally:
        for server in servers:
            server.stop()


def _stop_on_signal() -> threading.Event:
    """An event that SIGINT or SIGTERM sets."""
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    return done


__all__ = ["sandbox", "up"]
