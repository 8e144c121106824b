"""``python -m deploy.manifests generate|check``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deploy.manifests.layout import K8S_DIR, REPO_ROOT, all_files


def stale() -> list[Path]:
    """Files that differ from what the generator makes, and generated-looking files it no longer makes."""
    wanted = all_files()
    out = [p for p, text in wanted.items() if not p.is_file() or p.read_text(encoding="utf-8") != text]
    extra = [p for p in K8S_DIR.rglob("*.yaml") if p not in wanted]
    return sorted(out + extra)


def generate() -> list[Path]:
    wanted = all_files()
    changed = []
    for path, text in wanted.items():
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    for path in K8S_DIR.rglob("*.yaml"):
        if path not in wanted:
            path.unlink()
            changed.append(path)
    return changed


def _show(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.manifests")
    parser.add_argument("command", choices=["generate", "check"])
    args = parser.parse_args(argv)
    if args.command == "generate":
        for path in generate():
            print(f"wrote {_show(path)}")
        return 0
    differing = stale()
    for path in differing:
        print(f"out of date: {_show(path)}", file=sys.stderr)
    if differing:
        print("run: python -m deploy.manifests generate", file=sys.stderr)
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
