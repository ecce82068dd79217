"""The product ships without the development tooling: the image's wheel holds no devtools/,
its ``event-sink`` lists only the product's commands, and no product module imports it.

The Dockerfile copies only connector/ (with pyproject.toml, README.md and constraints.txt)
and runs ``pip install .``; the wheel test builds exactly such a tree, offline.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from argparse import ArgumentParser, _SubParsersAction
from pathlib import Path

from connector.ops.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
PRODUCT_COMMANDS = ["run", "check-config", "replay-dlq"]

# Run first in a child: devtools cannot be imported, as in the image, whatever sys.path holds.
BLOCK_DEVTOOLS = """
import importlib.abc
import sys


class BlockDevtools(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "devtools" or name.startswith("devtools."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, BlockDevtools())
"""


def _subcommands(parser: ArgumentParser) -> list[str]:
    (sub,) = (a for a in parser._actions if isinstance(a, _SubParsersAction))
    return list(sub.choices)


def _without_devtools(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK_DEVTOOLS + code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_product_wheel_holds_no_devtools(tmp_path: Path) -> None:
    tree = tmp_path / "src"
    tree.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "connector", tree / "connector", ignore=ignore)
    for name in ("pyproject.toml", "README.md", "constraints.txt"):
        shutil.copy2(ROOT / name, tree / name)
    out = tmp_path / "out"
    result = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check"),
            *("--no-index", "--no-deps", "--no-build-isolation", "-w", str(out), "."),
        ],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = out.glob("event_sink-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (entry_points,) = (n for n in names if n.endswith(".dist-info/entry_points.txt"))
        declared = archive.read(entry_points).decode()
    assert "connector/ops/cli.py" in names
    assert "connector/ops/entry.py" in names
    assert [n for n in names if n.startswith("devtools")] == []
    assert [n for n in names if "sandbox" in n or "devkafka" in n] == []
    # The plugin entry points are declared even there; connector/ops/cli.py skips them.
    assert "devtools.commands:add_sandbox" in declared


def test_without_devtools_event_sink_lists_only_the_product_commands() -> None:
    result = _without_devtools(
        "from argparse import _SubParsersAction\n"
        "from connector.ops.cli import build_parser\n"
        "parser = build_parser()\n"
        "(sub,) = (a for a in parser._actions if isinstance(a, _SubParsersAction))\n"
        "print(' '.join(sub.choices))\n"
        "parser.print_help()\n"
        "assert 'devtools' not in sys.modules\n"
    )
    assert result.returncode == 0, result.stderr
    first, _, help_text = result.stdout.partition("\n")
    assert first.split() == PRODUCT_COMMANDS
    assert "{run,check-config,replay-dlq}" in help_text
    assert "sandbox" not in help_text
    assert "demo" not in help_text
    assert result.stderr == ""  # skipped silently


def test_without_devtools_the_dev_commands_are_unknown() -> None:
    result = _without_devtools(
        "from connector.ops.cli import main\nmain(['sandbox', '--port', '0', '--token', 'T'])\n"
    )
    assert result.returncode == 2
    assert "invalid choice: 'sandbox'" in result.stderr


def test_no_product_module_imports_devtools() -> None:
    result = _without_devtools(
        "import importlib, pkgutil\n"
        "import connector\n"
        "mods = [m.name for m in pkgutil.walk_packages(connector.__path__, 'connector.')]\n"
        "for name in mods:\n"
        "    if not name.endswith('__main__'):\n"
        "        importlib.import_module(name)\n"
        "print(len(mods))\n"
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 20


def test_the_development_install_adds_sandbox_and_demo() -> None:
    commands = _subcommands(build_parser())
    assert commands[:3] == PRODUCT_COMMANDS
    assert sorted(commands[3:]) == ["demo", "sandbox"]
