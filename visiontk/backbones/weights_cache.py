"""What ImageNet weights exist for the registered backbones, which are on this machine,
and whether the cached files are intact.

torchvision names each weights file `<model>-<first hex digits of its SHA-256>.pth`;
`torch.hub` checks downloads against that prefix (its HASH_REGEX), and so does
`visiontk weights check` for files that are already in the cache.
"""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import torch.hub

from visiontk.backbones.pretrained import cached_weights_file, checkpoints_dir
from visiontk.backbones.registry import backbone_names, get_backbone_spec


def imagenet_weights() -> list[dict]:
    """One row per (backbone, weights): where the file belongs and whether it is there."""
    import torchvision

    rows = []
    for name in backbone_names():
        spec = get_backbone_spec(name)
        if spec.torchvision_name is not None:
            enum = torchvision.models.get_model_weights(spec.torchvision_name)
            for w in enum:
                file = cached_weights_file(w)
                rows.append({"backbone": name, "weights": w.name, "default": w is enum.DEFAULT,
                             "source": "torchvision", "file": file.name, "folder": str(file.parent),
                             "present": file.is_file(), "url": w.url,
                             "acc@1": w.meta.get("_metrics", {}).get("ImageNet-1K", {}).get("acc@1")})
        elif spec.package_weights is not None:
            pkg = spec.package_weights
            installed = importlib.util.find_spec(pkg["module"]) is not None
            file = Path(str(pkg["locate"]())) if installed else None
            rows.append({"backbone": name, "weights": "imagenet", "default": True, "source": f"pip {pkg['pip']}",
                         "file": file.name if file else None, "folder": str(file.parent) if file else None,
                         "present": bool(file and file.is_file()), "url": None, "acc@1": None,
                         "install": f"pip install 'visiontk[{pkg['extra']}]'"})
    return rows


def expected_hash_prefix(path: Path) -> str | None:
    """The hex digits torch.hub expects the file's SHA-256 to start with (from its name)."""
    match = torch.hub.HASH_REGEX.search(path.name)
    return match.group(1) if match and match.group(1) else None


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def check_file(path: Path) -> dict:
    prefix = expected_hash_prefix(path)
    row = {"file": str(path), "expected": prefix, "sha256": None, "status": "no hash in the file name"}
    try:
        row["sha256"] = sha256_of(path)
    except OSError as e:
        row["status"] = f"unreadable ({e.strerror or e})"
        return row
    if prefix:
        row["status"] = "ok" if row["sha256"].startswith(prefix) else "corrupt (hash differs)"
    return row


def cached_files() -> list[Path]:
    """Known ImageNet weights files present on this machine (torch hub cache and packages)."""
    files = []
    for row in imagenet_weights():
        if row["present"]:
            files.append(Path(row["folder"]) / row["file"])
    # Other files in the hub cache that look like torchvision weights are checked too.
    folder = checkpoints_dir()
    known = {f.name for f in files}
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            if p.is_file() and p.name not in known and p.suffix in (".pth", ".pt") and expected_hash_prefix(p):
                files.append(p)
    return files
