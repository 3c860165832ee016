"""Print every dependency of pyproject.toml pinned to its lower bound (``name==X`` for ``name>=X``; ``name==X.Y.*`` for ``name>=X.Y``), for
``make test-compat``: the environment that proves the declared ranges hold at their bottom.

    python tools/lower_bounds.py [--extras qlora,search,test] [--skip torch] > lower-bounds.txt
"""

from __future__ import annotations

import argparse
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lower_bounds(extras: list[str], skip: set[str]) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra in extras:
        specs += [s for s in project["optional-dependencies"][extra] if not s.startswith("hf-unlearn")]
    pins = {}
    for spec in specs:
        m = re.match(r"^([A-Za-z0-9_.\-\[\]]+?)\s*(?:\[[^\]]*\])?\s*>=\s*([0-9][^,;\s]*)", spec)
        if m is None:
            raise SystemExit(f"pyproject.toml: {spec!r} has no lower bound (name>=X); every dependency needs one.")
        name = re.sub(r"\[.*\]", "", m.group(1)).lower()
        if name not in skip:
            pins[name] = m.group(2)
    # X.Y means the X.Y series (its latest patch: some X.Y.0 releases were never published for every platform).
    return [f"{name}=={v}.*" if v.count(".") == 1 else f"{name}=={v}" for name, v in sorted(pins.items())]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--extras", default="", help="comma-separated extras to include")
    p.add_argument("--skip", default="", help="comma-separated packages left unpinned (installed otherwise)")
    a = p.parse_args()
    extras = [e for e in a.extras.split(",") if e]
    print("\n".join(lower_bounds(extras, {s.lower() for s in a.skip.split(",") if s})))


if __name__ == "__main__":
    main()
