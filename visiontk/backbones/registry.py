"""Backbone registry: name -> builder, plus what each backbone knows about itself."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from visiontk.backbones.base import IMAGENET_MEAN, IMAGENET_STD, Backbone
from visiontk.errors import UserError


@dataclass
class BackboneSpec:
    name: str
    builder: Callable[..., Backbone]
    description: str = ""
    # torchvision model name whose ImageNet weights this backbone can load.
    torchvision_name: str | None = None
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    options: dict = field(default_factory=dict)
    # ImageNet weights shipped by a pip package instead of torchvision: module,
    # pip name, extra, locate() -> file, input_size, classifier key prefix.
    package_weights: dict | None = None
    # The values `output_stride` may take (model.output_stride); empty: the
    # backbone's strides are fixed.
    output_strides: tuple[int, ...] = ()
    # The channels it is built for when no recipe says (`backbones list`): 1 for signals and text.
    in_channels: int = 3

    @property
    def has_imagenet_weights(self) -> bool:
        return self.torchvision_name is not None or self.package_weights is not None


_REGISTRY: dict[str, BackboneSpec] = {}


def register_backbone(name: str, description: str = "", torchvision_name: str | None = None, **spec_kwargs):
    def deco(builder: Callable[..., Backbone]):
        _REGISTRY[name] = BackboneSpec(name, builder, description, torchvision_name, **spec_kwargs)
        return builder

    return deco


def _ensure_loaded() -> None:
    # Importing the modules runs their @register_backbone decorators.
    from visiontk.backbones import classic, efficientnet_lite, torchvision_models  # noqa: F401
    from visiontk.backbones import signal1d, text1d, unet  # noqa: F401


def backbone_names() -> list[str]:
    _ensure_loaded()
    return sorted(_REGISTRY)


def get_backbone_spec(name: str) -> BackboneSpec:
    _ensure_loaded()
    if name not in _REGISTRY:
        import difflib

        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UserError(f"model.backbone: unknown backbone '{name}'{hint}; see 'visiontk backbones list'")
    return _REGISTRY[name]


def create_backbone(name: str, in_channels: int | None = None, output_stride: int | None = None,
                    data_inputs: dict | None = None, **options) -> Backbone:
    """`output_stride` (None: the backbone's own) is the stride of its deepest feature;
    only backbones that list it in `output_strides` can change it. `data_inputs`: what the
    data tells a backbone (a signal's length, a text vocabulary: the preprocess's
    `backbone_inputs()`), passed to the builders that take them."""
    spec = get_backbone_spec(name)
    if in_channels is None:
        in_channels = spec.in_channels
    if output_stride is not None:
        if not spec.output_strides:
            able = ", ".join(n for n in sorted(_REGISTRY) if _REGISTRY[n].output_strides)
            raise UserError(f"model.output_stride: backbone '{name}' has fixed strides; output_stride works with {able}")
        if output_stride not in spec.output_strides:
            raise UserError(f"model.output_stride: backbone '{name}' takes "
                            f"{' | '.join(map(str, spec.output_strides))}, got {output_stride}")
    stride = {} if output_stride is None else {"output_stride": output_stride}
    if data_inputs:
        import inspect

        accepted = inspect.signature(spec.builder).parameters
        options = {**{k: v for k, v in data_inputs.items() if k in accepted}, **options}
    try:
        return spec.builder(in_channels=in_channels, **stride, **options)
    except TypeError as e:
        raise UserError(f"model.backbone_options: bad options {options} for backbone '{name}' ({e})") from None
