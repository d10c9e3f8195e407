"""Tests of the credential store, token refresh and the sandbox authorization server."""
