"""ImageNet weights for backbones, read offline from torchvision's cache or a file.

torchvision's weights API says which file holds which weights (its URL names
the file); the file itself must already be in `$TORCH_HOME/hub/checkpoints`
(or be given as a path): nothing is downloaded at run time.
"""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision

from visiontk.backbones.base import Backbone
from visiontk.backbones.registry import get_backbone_spec
from visiontk.console import info, warn
from visiontk.errors import UserError


def torchvision_weights(backbone: str, which: str = "imagenet"):
    """The torchvision weights enum member for `backbone` (`imagenet` = DEFAULT)."""
    spec = get_backbone_spec(backbone)
    if spec.torchvision_name is None:
        raise UserError(f"model.pretrained: backbone '{backbone}' has no ImageNet weights in torchvision")
    enum = torchvision.models.get_model_weights(spec.torchvision_name)
    if which.lower() in ("imagenet", "default"):
        return enum.DEFAULT
    try:
        return enum[which]
    except KeyError:
        names = ", ".join(m.name for m in enum)
        raise UserError(f"model.pretrained: '{which}' is not a weights name of {backbone} (known: {names})") from None


def checkpoints_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def cached_weights_file(weights) -> Path:
    return checkpoints_dir() / os.path.basename(urlparse(weights.url).path)


def load_state_dict_file(path: Path) -> dict:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same one-line error
        first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        raise UserError(f"{path}: not a loadable weights file ({first[:200]})") from None
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]  # a visiontk checkpoint
    elif isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise UserError(f"{path}: expected a state dict, found {type(obj).__name__}")
    return obj


def _strip_to_backbone(state: dict, backbone: Backbone) -> dict:
    """Map a torchvision or visiontk state dict onto `backbone`'s keys."""
    own = backbone.state_dict()
    for prefix in ("", "backbone.", "module.backbone."):
        mapped = {}
        for k, v in state.items():
            if not k.startswith(prefix):
                continue
            key = k[len(prefix):]
            key = key if key.startswith("body.") else "body." + key
            if key in own:
                mapped[key] = v
        if mapped:
            return mapped
    return {}


def load_backbone_weights(backbone: Backbone, state: dict, source: str) -> None:
    mapped = _strip_to_backbone(state, backbone)
    own = backbone.state_dict()
    mismatched = [k for k, v in mapped.items() if own[k].shape != v.shape]
    if mismatched:
        raise UserError(f"{source}: weights do not fit backbone {backbone.name} (shape differs at '{mismatched[0]}')")
    result = backbone.load_state_dict(mapped, strict=False)
    if not mapped:
        raise UserError(f"{source}: no key of this file matches backbone {backbone.name}")
    if result.missing_keys:
        warn(f"{source}: {len(result.missing_keys)} backbone keys missing from the file, left initialised "
             f"(first: {result.missing_keys[0]})")
    unused = len(state) - len(mapped)
    info(f"loaded {len(mapped)} tensors into {backbone.name} from {source}" + (f" ({unused} unused, e.g. the classifier)" if unused else ""))


def load_pretrained(backbone: Backbone, backbone_name: str, pretrained: str) -> dict:
    """Load weights into `backbone`; return the normalisation that goes with them."""
    spec = get_backbone_spec(backbone_name)
    if pretrained in ("", "none", None):
        return {"mean": list(spec.mean), "std": list(spec.std)}
    path = Path(pretrained)
    if path.suffix in (".pt", ".pth", ".bin") or path.exists():
        if not path.is_file():
            raise UserError(f"model.pretrained: weights file {path} does not exist")
        load_backbone_weights(backbone, load_state_dict_file(path), str(path))
        return {"mean": list(spec.mean), "std": list(spec.std)}
    weights = torchvision_weights(backbone_name, pretrained)
    file = cached_weights_file(weights)
    if not file.is_file():
        raise UserError(
            f"ImageNet weights for {backbone_name} are not in the local cache: put {file.name} into {file.parent} "
            f"(it comes from {weights.url}), or give model.pretrained a file path"
        )
    load_backbone_weights(backbone, load_state_dict_file(file), str(file))
    tf = weights.transforms()
    return {"mean": list(tf.mean), "std": list(tf.std)}
