"""Publish the bundled zoo: ``python -m train.publish --owner NAME [--prefix fracture-] [--private]``.

Pushes every model folder under ``--models-dir`` (default ``assets/models``) as its own model repo
``NAME/<prefix><folder>`` (the folder already is a Hub repo: weights, config, card, plots) and
lists those repos in the README front matter's ``models:``, which links the Space to them on the Hub.
The token comes from ``HF_TOKEN`` or ``hf auth login``, inside huggingface_hub; it is never read here.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fracture_demo.hub import push_folder
from fracture_demo.zoo import BUNDLED_DIR

README = Path(__file__).resolve().parents[1] / "README.md"


def model_folders(models_dir: Path) -> list[Path]:
    return sorted(p.parent for p in models_dir.glob("*/config.json"))


def set_front_matter_models(readme: Path, repo_ids: list[str]) -> None:
    """Rewrite ``models:`` in the README's YAML front matter (the Space's card) to list ``repo_ids``."""
    lines = readme.read_text().split("\n")
    if lines[0] != "---" or "---" not in lines[1:]:
        raise ValueError(f"{readme} has no front matter")
    end = lines.index("---", 1)
    front = lines[1:end]
    at = next((i for i, line in enumerate(front) if line.startswith("models:")), len(front))
    stop = at + 1
    while stop < len(front) and front[stop].startswith((" ", "-")):  # the old list's items
        stop += 1
    front[at:stop] = ["models:"] + [f"  - {r}" for r in repo_ids]
    readme.write_text("\n".join(["---", *front, *lines[end:]]))


def publish(owner: str, models_dir: Path = BUNDLED_DIR, prefix: str = "fracture-", private: bool = False,
            readme: Path | None = README, api=None) -> dict[str, str]:
    """Push each model folder; returns {folder name: repo URL} and updates ``readme``'s ``models:``."""
    urls = {}
    for folder in model_folders(models_dir):
        repo_id = f"{owner}/{prefix}{folder.name}"
        urls[folder.name] = push_folder(folder, repo_id, private=private, api=api,
                                        commit_message=f"Upload {folder.name} from the fracture demo's bundled zoo")
        print(f"pushed {folder} -> {urls[folder.name]}", file=sys.stderr)
    if readme is not None:
        set_front_matter_models(readme, [f"{owner}/{prefix}{name}" for name in urls])
    return urls


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.publish", description=__doc__.split("\n")[0])
    ap.add_argument("--owner", required=True, help="Hub user or organisation")
    ap.add_argument("--prefix", default="fracture-", help="repo name = PREFIX + folder name")
    ap.add_argument("--models-dir", default=str(BUNDLED_DIR))
    ap.add_argument("--private", action="store_true")
    ap.add_argument("--readme", default=str(README), help="whose front matter lists the repos ('none': leave it)")
    args = ap.parse_args(argv)
    if not model_folders(Path(args.models_dir)):
        print(f"error: no model folders (*/config.json) under {args.models_dir}", file=sys.stderr)
        return 2
    publish(args.owner, Path(args.models_dir), args.prefix, args.private,
            None if args.readme == "none" else Path(args.readme))
    return 0


if __name__ == "__main__":
    sys.exit(main())
