"""crmhub's web app: webhook receiver, OAuth callback, health and metrics."""

from hub.web.app import create_app

__all__ = ["create_app"]
