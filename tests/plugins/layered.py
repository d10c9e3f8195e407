"""A throwaway virtual environment on top of this one, for installing plugins in tests.

It sees every package of the running environment (crmhub, pytest, setuptools) through a
``.pth`` file, and ``pip install`` puts new packages into its own site-packages, so the
project's environment is never changed and nothing is left behind.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
from pathlib import Path


class Layered:
    def __init__(self, folder: Path) -> None:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
        self.python = folder / "bin" / "python"
        own = subprocess.run(
            [str(self.python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        parents = [p for p in site.getsitepackages() if Path(p).is_dir()]
        line = "import site; " + "; ".join(f"site.addsitedir({p!r})" for p in parents)
        (Path(own) / "_parent_environment.pth").write_text(line + "\n", encoding="utf-8")

    def run(
        self, *args: str, cwd: Path | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "VIRTUAL_ENV"))}
        env["COLUMNS"] = "200"
        return subprocess.run(
            [str(self.python), *args],
            capture_output=True,
            text=True,
            cwd=cwd,
            env=env,
            timeout=timeout,
        )

    def pip_install_editable(self, project: Path | str) -> subprocess.CompletedProcess[str]:
        """``pip install -e PROJECT`` into this environment, offline: the build uses the
        setuptools already installed, and crmhub and the extras' packages (pytest,
        pytest-asyncio) are already there. ``PROJECT`` may name extras: ``path[test]``."""
        return subprocess.run(
            [
                sys.executable, "-m", "pip", "--python", str(self.python), "install",
                "--quiet", "--no-build-isolation", "--no-deps", "--no-index", "-e", str(project),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )  # fmt: skip
