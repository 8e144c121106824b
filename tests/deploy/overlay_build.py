"""A small kustomize for the overlays' own features (namespace, images, strategic-merge patches),
used where no kustomize binary is at hand, and to check that every patch hits an object."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml


def _merge(base: Any, patch: Any) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = _merge(base.get(key), value) if key in base else copy.deepcopy(value)
        return out
    if (isinstance(base, list) and isinstance(patch, list)
            and all(isinstance(x, dict) and "name" in x for x in [*base, *patch])):
        merged = [copy.deepcopy(x) for x in base]
        names = [x["name"] for x in merged]
        for item in patch:
            if item["name"] in names:
                i = names.index(item["name"])
                merged[i] = _merge(merged[i], item)
            else:
                merged.append(copy.deepcopy(item))
        return merged
    return copy.deepcopy(patch)


def _load(path: Path) -> list[dict[str, Any]]:
    return [o for o in yaml.safe_load_all(path.read_text(encoding="utf-8")) if o]


def build(directory: Path) -> list[dict[str, Any]]:
    """The objects of a kustomization directory; raises if a patch targets no object."""
    k = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
    objs: list[dict[str, Any]] = []
    for res in k.get("resources", []):
        path = (directory / res).resolve()
        objs += build(path) if path.is_dir() else _load(path)
    for entry in k.get("patches", []):
        for patch in _load(directory / entry["path"]):
            hits = [i for i, o in enumerate(objs) if o["kind"] == patch["kind"]
                    and o["metadata"]["name"] == patch["metadata"]["name"]]
            if len(hits) != 1:
                raise AssertionError(f"patch {patch['kind']}/{patch['metadata']['name']} "
                                     f"matches {len(hits)} objects")
            objs[hits[0]] = _merge(objs[hits[0]], patch)
    if "namespace" in k:
        for o in objs:
            o["metadata"]["namespace"] = k["namespace"]
    for image in k.get("images", []):
        for o in objs:
            for c in o.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
                if c["image"].split(":")[0] == image["name"]:
                    c["image"] = f"{image.get('newName', image['name'])}:{image.get('newTag', 'latest')}"
    return objs
