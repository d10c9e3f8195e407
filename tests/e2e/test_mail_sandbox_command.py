"""``crmhub sandbox gmail outlook`` serves both mail sandboxes; Outlook's over HTTPS, with
the certificate to trust named, and google-api-python-client builds against Gmail's."""

from __future__ import annotations

import signal
import ssl
import subprocess
import sys

import httpx


def test_serves_gmail_and_outlook() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub", "sandbox", "gmail", "outlook", "--port-base", "0",
         "--size", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        gmail, gmail_url = proc.stdout.readline().split()
        outlook, outlook_url = proc.stdout.readline().split()
        trust = proc.stdout.readline().split()
        assert (gmail, outlook) == ("gmail", "outlook")
        assert gmail_url.startswith("http://") and outlook_url.startswith("https://")
        assert trust[:3] == ["outlook", "certificate:", trust[2]] and trust[2].endswith(".pem")
        document = httpx.get(f"{gmail_url}/discovery/v1/apis/gmail/v1/rest", timeout=10).json()
        assert document["rootUrl"] == gmail_url + "/"
        answer = httpx.get(
            f"{outlook_url}/oauth/sandbox-tenant/v2.0/.well-known/openid-configuration",
            verify=ssl.create_default_context(cafile=trust[2]),
            timeout=10,
        )
        assert answer.json()["token_endpoint"] == f"{outlook_url}/oauth/token"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)
