"""Command modules; importing this module registers every command on ``hub.cli.app``."""

import contextlib
import importlib

_MODULES = ("core", "auth", "inbox", "daemon")

for _name in _MODULES:
    # A command module that is not part of this installation is simply absent.
    with contextlib.suppress(ModuleNotFoundError):
        importlib.import_module(f"hub.cli.{_name}_commands")
