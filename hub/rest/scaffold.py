"""``crmhub new-connector NAME``: a plugin package that works as generated.

The package ``crmhub-connector-NAME/`` holds a declaration of a contacts API (offset paging,
a changed-since filter, versions sent as ``If-Match``, a deleted-records endpoint,
idempotent creates), its default mapping, the connector contract as its test, a README, the
declaration's JSON Schema for editors, and a ``pyproject.toml`` whose entry point names the
declaration. ``pip install -e './crmhub-connector-NAME[test]' && pytest crmhub-connector-NAME``
passes before anything is changed (the ``test`` extra brings pytest and pytest-asyncio).
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path
from string import Template

from hub.errors import ConfigError

__all__ = ["NAME", "TEST_EXTRA", "install_target", "next_steps", "scaffold"]

NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
TEST_EXTRA = "test"
"""The generated package's extra holding what its tests need (pytest, pytest-asyncio)."""
TEMPLATES = Path(__file__).parent / "templates"
SCHEMA = Path(__file__).parent / "declaration.schema.json"

README = """\
# crmhub-connector-$name

A crmhub connector for the $title API, declared in
[`$package/$name.toml`]($package/$name.toml) with its default mapping in
[`$package/mappings/`]($package/mappings/). Editors that read `#:schema` comments (Taplo,
Even Better TOML) check the declaration against `declaration.schema.json` as you type.

    pip install -e './crmhub-connector-$name[test]'  # [test] brings pytest, pytest-asyncio
    pytest crmhub-connector-$name                     # the contract, against the sandbox
    crmhub connectors                                 # lists `$name`
    crmhub sandbox $name                              # a made-up $title API on loopback

Use it from `crmhub.toml`:

```toml
[connections.$name]
connector = "$name"
# base_url = "https://..."             # where your account's API answers
```

and store the API key with `crmhub connect $name`. The declaration's keys are described in
crmhub's plugins.md ("Declaring a REST connector").

The tests run against a sandbox made from the declaration, so they prove the declaration
consistent, not true to your API: a wrong records path, id field or parameter name passes
them. Check the declaration against the API's documentation or published description, and
look at a first `crmhub sync $name --plan` of a test account before syncing for real.
Creates must be idempotent (a create sent again after a crash must not make a second
record): keep `idempotency_header` if the API honours one, else declare an `upsert` by a
natural key; plugins.md ("Creating without duplicates") says what to do without either.
"""

TEST = '''\
"""The connector contract, run against the sandbox crmhub makes from the declaration."""

from hub.testing import declarative_contract

Test${camel}Contract = declarative_contract("$package:$name.toml")
'''

INIT = '''\
"""crmhub connector ``$name``: declared in ``$name.toml``."""
'''


def install_target(root: Path) -> str:
    """What ``pip install -e`` is given for the package at ``root``: its folder with the
    test extra, as a path pip cannot take for a package name, quoted for the shell."""
    folder = str(root) if root.is_absolute() else f"./{root.as_posix()}"
    return shlex.quote(f"{folder}[{TEST_EXTRA}]")


def next_steps(root: Path, name: str) -> str:
    """What ``crmhub new-connector`` tells to do after writing the package at ``root``."""
    return (
        f"next: pip install -e {install_target(root)} && pytest {root}\n"
        f"      then edit {root.name}/crmhub_connector_{name}/{name}.toml to match your API"
    )


def scaffold(name: str, parent: Path) -> Path:
    """Write the package ``crmhub-connector-<name>`` under ``parent``; returns its folder.

    Raises ``ConfigError`` for a name that cannot be a connector's (lower-case letters,
    digits and ``_``, starting with a letter) or when the folder already exists.
    """
    if not NAME.match(name):
        raise ConfigError(
            f"{name!r} cannot name a connector: use lower-case letters, digits and '_', "
            "starting with a letter (it becomes the entry point, the package and the URL slug)"
        )
    root = parent / f"crmhub-connector-{name}"
    if root.exists():
        raise ConfigError(f"{root} already exists; choose another name or remove it")
    package = f"crmhub_connector_{name}"
    values = {
        "name": name,
        "package": package,
        "title": name.replace("_", " ").title(),
        "camel": "".join(p.capitalize() for p in name.split("_")),
    }
    files = {
        "pyproject.toml": (TEMPLATES / "plugin_pyproject.toml").read_text(encoding="utf-8"),
        "README.md": README,
        f"{package}/__init__.py": INIT,
        f"{package}/{name}.toml": (TEMPLATES / "declaration.toml").read_text(encoding="utf-8"),
        f"{package}/mappings/contacts.toml": (TEMPLATES / "mapping.toml").read_text("utf-8"),
        "tests/test_contract.py": TEST,
    }
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(text).substitute(values), encoding="utf-8")
    shutil.copyfile(SCHEMA, root / "declaration.schema.json")
    return root
