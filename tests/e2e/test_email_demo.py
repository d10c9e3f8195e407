"""The example configuration with a Gmail and an Outlook mailbox works as its comments say:
``crmhub sync`` against both sandboxes, each mailbox's mail as activities, then the search
the comments show."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from connectors.gmail.sandbox import create_sandbox as gmail_sandbox
from connectors.outlook.sandbox import create_sandbox as outlook_sandbox
from hub.sandbox import serve_sandbox

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "email-demo.toml"


def test_the_example_syncs_both_mailboxes(tmp_path: Path) -> None:
    gmail_app = gmail_sandbox(seed=1, size=30, contacts=5)
    outlook_app = outlook_sandbox(seed=1, size=20, contacts=5, tls_folder=tmp_path / "tls")
    gmail_url, gmail_server = serve_sandbox(gmail_app)
    outlook_url, outlook_server = serve_sandbox(outlook_app)
    try:
        key = httpx.post(f"{gmail_url}/_gmail/service_account", timeout=10).json()
        (tmp_path / "gmail-key.json").write_text(json.dumps(key))
        assert outlook_app.tls is not None
        text = (
            EXAMPLE.read_text()
            .replace("http://127.0.0.1:8800", gmail_url)
            .replace("https://127.0.0.1:8801", outlook_url)
            .replace("/path/to/outlook-sandbox.pem", outlook_app.tls[0])
        )
        (tmp_path / "email-demo.toml").write_text(text)
        env = {
            **os.environ,
            "CRMHUB_CONNECTIONS__OUTLOOK__OAUTH__CLIENT_SECRET": "sandbox-secret",
            "COLUMNS": "200",
        }
        env.pop("CRMHUB_CONFIG", None)

        def crmhub(*args: str) -> str:
            done = subprocess.run(
                [sys.executable, "-m", "hub", "--config", "email-demo.toml", *args],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=180,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            return done.stdout

        crmhub("sync")
        found = crmhub("entities", "search", "Quote", "--type", "activity", "--json")
        subjects = {e["fields"]["subject"] for e in json.loads(found)}
        assert subjects and all("Quote" in s for s in subjects)
        sources = {e["fields"]["source"] for e in json.loads(found)}
        assert sources == {"gmail", "outlook"}
    finally:
        gmail_server.stop()
        outlook_server.stop()
