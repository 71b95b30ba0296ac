"""Check the import contracts in pyproject.toml (`[tool.importlinter]`) with import-linter.

mmkg's folders are installed under one namespace (`[tool.setuptools.package-dir]`: core/ is `mmkg`,
graph/ is `mmkg.graph`, ...), but import-linter (grimp) reads a package from the one folder it lives in.
So this builds that folder for the run, as links to the source files in a temporary directory, puts it first
on the path and runs import-linter's command there, under this interpreter.
Usage: `.venv/bin/python scripts/lint_imports.py [lint-imports options]`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def link_packages(root: Path) -> None:
    """`root/mmkg/...` as the installed layout: the root package's files, and each subpackage's folder."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    folders: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    for package, folder in sorted(folders.items(), key=lambda item: item[0].count(".")):
        target = root.joinpath(*package.split("."))
        source = REPO / folder
        if "." not in package:  # a real folder: its subpackages sit in it beside the linked files
            target.mkdir(parents=True)
            for path in source.glob("*.py"):
                (target / path.name).symlink_to(path)
        else:
            target.symlink_to(source, target_is_directory=True)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="mmkg-imports-") as tmp:
        link_packages(Path(tmp))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (tmp, os.environ.get("PYTHONPATH")) if p)}
        run = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
        command = [sys.executable, "-c", run, "--config", str(REPO / "pyproject.toml"), "--no-cache", *sys.argv[1:]]
        return subprocess.call(command, env=env, cwd=tmp)


if __name__ == "__main__":
    sys.exit(main())
