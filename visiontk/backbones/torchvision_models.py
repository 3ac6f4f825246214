"""torchvision's classic CNNs as multi-scale feature extractors.

Features are taken with torchvision's own `create_feature_extractor` at the
last node of each stride (2, 4, 8, 16, 32), so a torchvision state dict loads
into `backbone.body` with the classifier keys simply unused.
"""
from __future__ import annotations

import torch
import torchvision
from torch import nn
from torchvision.models import feature_extraction
from torchvision.models.feature_extraction import NodePathTracer, create_feature_extractor

from visiontk.backbones.base import Backbone
from visiontk.backbones.registry import register_backbone


def _sequential_stride_nodes(features: nn.Sequential, prefix: str, in_channels: int) -> list[str]:
    """Names of the last child of `features` at each stride, found by a probe pass."""
    size = 64
    x = torch.zeros(1, in_channels, size, size)
    last_at_stride: dict[int, str] = {}
    with torch.no_grad():
        for name, child in features.named_children():
            x = child(x)
            last_at_stride[size // x.shape[-1]] = f"{prefix}.{name}"
    return [last_at_stride[s] for s in sorted(last_at_stride) if s > 1]


class _ScopeRecordingTracer(NodePathTracer):
    """torchvision's tracer, also writing into each node the modules it was traced
    inside: `node.meta["module_scopes"]` = ((qualified name, class name), ...),
    outermost first.

    The fx graph of a feature extractor is flat (leaf modules and functions), so
    this is what lets a summary show blocks (a ResNet BasicBlock, an Inception
    module) and place the residual sums and concatenations inside them.
    """

    def call_module(self, m, forward, args, kwargs):
        stack = self.__dict__.setdefault("_scope_stack", [])
        stack.append((self.path_of_module(m), type(m).__name__))
        try:
            return super().call_module(m, forward, args, kwargs)
        finally:
            stack.pop()

    def create_proxy(self, kind, target, args, kwargs, name=None, type_expr=None, *rest):
        proxy = super().create_proxy(kind, target, args, kwargs, name, type_expr, *rest)
        proxy.node.meta["module_scopes"] = tuple(self.__dict__.get("_scope_stack", ()))
        return proxy


def _build(tv_name: str, nodes_fn, in_channels: int, **kwargs) -> Backbone:
    # Stems stay RGB whatever in_channels says: the Backbone wrapper repeats grey
    # input to 3 channels, which keeps pretrained RGB filters usable.
    model = torchvision.models.get_model(tv_name, weights=None, **kwargs)
    model.eval()
    nodes = nodes_fn(model)
    # create_feature_extractor instantiates the tracer class it finds in its module.
    saved = feature_extraction.NodePathTracer
    feature_extraction.NodePathTracer = _ScopeRecordingTracer
    try:
        body = create_feature_extractor(model, return_nodes={n: str(i) for i, n in enumerate(nodes)})
    finally:
        feature_extraction.NodePathTracer = saved
    return Backbone(tv_name, body, in_channels=3)


def _resnet_nodes(model):
    return ["relu", "layer1", "layer2", "layer3", "layer4"]


def _features_nodes(model):
    return _sequential_stride_nodes(model.features, "features", 3)


def _googlenet_nodes(model):
    return ["conv1", "conv3", "inception3b", "inception4e", "inception5b"]


def _register(tv_name: str, nodes_fn, description: str, **build_kwargs):
    @register_backbone(tv_name, description=description, torchvision_name=tv_name)
    def builder(in_channels: int = 3):
        return _build(tv_name, nodes_fn, in_channels, **build_kwargs)

    return builder


_register("vgg11_bn", _features_nodes, "VGG-11 with batch norm (Simonyan 2014)")
_register("vgg16_bn", _features_nodes, "VGG-16 with batch norm (Simonyan 2014)")
# aux heads are a training-time device of the classifier; as a backbone they are
# dead weight. transform_input stays off: normalisation is the data pipeline's job.
_register("googlenet", _googlenet_nodes, "GoogLeNet / Inception v1 (Szegedy 2014)", aux_logits=False, init_weights=True)
_register("resnet18", _resnet_nodes, "ResNet-18 (He 2015)")
_register("resnet34", _resnet_nodes, "ResNet-34 (He 2015)")
_register("resnet50", _resnet_nodes, "ResNet-50 (He 2015)")
_register("resnext50_32x4d", _resnet_nodes, "ResNeXt-50 32x4d (Xie 2016)")
_register("mobilenet_v2", _features_nodes, "MobileNetV2 (Sandler 2018)")
_register("mobilenet_v3_small", _features_nodes, "MobileNetV3-Small (Howard 2019)")
_register("mobilenet_v3_large", _features_nodes, "MobileNetV3-Large (Howard 2019)")
