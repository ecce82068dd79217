"""The connector of another revision, for the benchmark's "before" runs: extracted with
``git archive`` (the repository is left alone) and run with that tree first on the path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def resolve_revision(rev: str) -> str:
    """The commit ``rev`` names (``git rev-parse``); fails early on a bad revision."""
    argv = ["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"]
    found = subprocess.run(argv, check=False, capture_output=True, text=True)
    if found.returncode != 0:
        raise SystemExit(f"--compare-rev {rev}: not a commit of {ROOT}")
    return found.stdout.strip()


def before_env(tree: Path) -> dict[str, str]:
    """PYTHONPATH first: the old tree's ``connector`` wins over the editable install."""
    rest = [os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []
    return {"PYTHONPATH": os.pathsep.join([str(tree), *rest])}


def extract_revision(rev: str, tree: Path) -> Path:
    """``git archive REV | tar -x -C tree`` (the repository is left alone); returns where
    ``import connector`` resolves from there, which must be inside ``tree``."""
    tree.mkdir(parents=True)
    archive = subprocess.Popen(["git", "-C", str(ROOT), "archive", rev], stdout=subprocess.PIPE)
    assert archive.stdout is not None
    untar = subprocess.run(["tar", "-x", "-C", str(tree)], stdin=archive.stdout, check=False)
    archive.stdout.close()
    if archive.wait() != 0 or untar.returncode != 0:
        raise RuntimeError(f"git archive {rev} | tar -x failed")
    probe = [sys.executable, "-c", "import connector; print(connector.__file__)"]
    env = {**os.environ, **before_env(tree)}
    found = subprocess.run(probe, cwd=tree, env=env, check=True, capture_output=True, text=True)
    package = Path(found.stdout.strip()).resolve()
    if not package.is_relative_to(tree.resolve()):
        raise RuntimeError(f"{rev}: `import connector` resolves to {package}, not the old tree")
    return package
