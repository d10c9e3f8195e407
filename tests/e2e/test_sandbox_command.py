"""``crmhub sandbox`` serves installed connectors' sandboxes on loopback until stopped."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import httpx

from connectors.mailchimp.sandbox import LIST_ID, SANDBOX_API_KEY


def test_serves_the_mailchimp_sandbox_with_the_seeded_size() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub", "sandbox", "mailchimp", "--port-base", "0", "--size", "7"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        name, url = proc.stdout.readline().split()
        assert name == "mailchimp" and url.startswith("http://127.0.0.1:")
        answer = httpx.get(
            f"{url}/3.0/lists/{LIST_ID}/members",
            auth=("crmhub", SANDBOX_API_KEY),
            params={"count": 100},
            timeout=10,
        )
        assert answer.status_code == 200 and answer.json()["total_items"] == 7
        assert httpx.get(f"{url}/_sandbox/log", timeout=10).status_code == 200
        checks = httpx.get(f"{url}/_sandbox/violations", timeout=10).json()
        assert checks == {"total": 0, "violations": [], "checked": True}
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)


def test_an_unknown_sandbox_is_named_with_the_known_ones() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "hub", "sandbox", "nosuch"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "no sandbox for nosuch" in proc.stderr and "mailchimp" in proc.stderr


def test_a_taken_port_is_named_with_the_way_out() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "hub", "sandbox", "mailchimp", "--port-base", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"127.0.0.1:{port}" in proc.stderr and "--port-base P" in proc.stderr


def test_sigterm_stops_the_sandboxes() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub", "sandbox", "mailchimp", "--port-base", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("mailchimp")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
