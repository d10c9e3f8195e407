"""The demo: two spreadsheets that know some of the same people, kept in step.

``crmhub demo`` writes a folder with ``sales.csv``, ``newsletter.csv`` and a
``crmhub.toml`` joining them, then syncs until quiet and shows the result. Needs no
accounts and no network.
"""

from __future__ import annotations

from pathlib import Path

SALES = """\
email,first_name,last_name,phone,company,city
Ann.Lee@Example.com ,Ann,Lee,(415) 555-0100,Acme,San Francisco
bob@example.org,Bob,Stone,+1 212 555 0199,Globex,New York
carla@example.net,Carla,Diaz,,Initech,Austin
"""

NEWSLETTER = """\
email;first_name;last_name;phone;consent
ann.lee@example.com;Ann;Lee;+14155550100;yes
dave@example.com;Dave;Kim;+1 646 555 0123;yes
bob@EXAMPLE.org;Robert;Stone;;no
"""

CONFIG = """\
# crmhub demo: two CSV files kept in step. Edit either file and run
#   crmhub --config {config} sync
# to see the change reach the other one.

[hub]
database = "crmhub.db"
phone_region = "US"

[connections.sales]
connector = "csv"
path = "sales.csv"
conflict_policy = "newest"

[connections.newsletter]
connector = "csv"
path = "newsletter.csv"
# The newsletter list is where people fix their own names: it wins disagreements.
conflict_policy = "prefer"
prefer = ["newsletter", "sales"]
"""


def write_demo(folder: Path, *, reset: bool = False) -> Path:
    """Write the demo files into ``folder`` (kept as they are unless ``reset``)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "crmhub.toml"
    files = {"sales.csv": SALES, "newsletter.csv": NEWSLETTER}
    if reset or not config.exists():
        for name in ("crmhub.db", "crmhub.db-wal", "crmhub.db-shm"):
            (folder / name).unlink(missing_ok=True)
        for name, text in files.items():
            (folder / name).write_text(text, encoding="utf-8")
        config.write_text(CONFIG.format(config=config.name), encoding="utf-8")
    return config
