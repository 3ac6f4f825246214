"""torchvision's classic CNNs as multi-scale feature extractors.

Features are taken with torchvision's own `create_feature_extractor` at the
last node of each stride (2, 4, 8, 16, 32), so a torchvision state dict loads
into `backbone.body` with the classifier keys simply unused.

The ResNet family takes `output_stride` 8 or 16: the stride 2 of the last one
or two stages becomes a dilation (atrous convolution), as torchvision's
`replace_stride_with_dilation` does, so the deepest features keep stride 8 or
16 and the strides read e.g. [2, 4, 8, 8, 8]. Dilation changes no parameter
shape: the same weights load.

torchvision is imported when one of these backbones is built, not when the
registry lists them: its import costs about a second (it loads torch._dynamo),
which a model on another backbone (e.g. `predict` with tinycnn) need not pay.
"""
from __future__ import annotations

import functools

import torch
from torch import nn

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


@functools.cache
def _scope_recording_tracer() -> type:
    """The tracer class below (made on first use: its base class is torchvision's)."""
    from torchvision.models.feature_extraction import NodePathTracer

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

    return _ScopeRecordingTracer


def _build(tv_name: str, nodes_fn, in_channels: int, prepare=None, **kwargs) -> Backbone:
    # Stems stay RGB whatever in_channels says: the Backbone wrapper repeats grey
    # input to 3 channels, which keeps pretrained RGB filters usable.
    import torchvision
    from torchvision.models import feature_extraction

    model = torchvision.models.get_model(tv_name, weights=None, **kwargs)
    model.eval()
    if prepare is not None:
        prepare(model)
    nodes = nodes_fn(model)
    # create_feature_extractor instantiates the tracer class it finds in its module.
    saved = feature_extraction.NodePathTracer
    feature_extraction.NodePathTracer = _scope_recording_tracer()
    try:
        body = feature_extraction.create_feature_extractor(model,
                                                          return_nodes={n: str(i) for i, n in enumerate(nodes)})
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


# output_stride -> which of layer2, layer3, layer4 trade their stride 2 for a dilation.
RESNET_OUTPUT_STRIDES = {32: (False, False, False), 16: (False, False, True), 8: (False, True, True)}


def dilate_resnet(model: nn.Module, replace_stride_with_dilation: tuple[bool, bool, bool]) -> nn.Module:
    """Turn the stride 2 of layer2..layer4 into dilations, in place, as torchvision's
    `replace_stride_with_dilation` builds it: in a dilated stage the formerly strided
    3x3 convolution keeps the dilation reached so far, every 3x3 convolution after
    it gets that dilation x 2, and the 1x1 shortcut no longer subsamples.

    Done here on a built model, not through torchvision's argument, because
    torchvision's BasicBlock (resnet18/34) refuses a dilation > 1. The result is
    the "a trous" form of the same network: sampled every d pixels, a dilated
    feature equals the undilated one (tests/test_dilation.py checks both).
    """
    dilation = 1
    for layer, dilate in zip((model.layer2, model.layer3, model.layer4), replace_stride_with_dilation):
        if not dilate:
            continue
        previous, dilation = dilation, dilation * 2
        for i, block in enumerate(layer):
            after_stride = i > 0
            for name in ("conv1", "conv2", "conv3"):
                conv = getattr(block, name, None)
                if conv is None or conv.kernel_size == (1, 1):
                    continue
                if conv.stride != (1, 1):
                    conv.stride = (1, 1)
                    d = previous
                    after_stride = True
                else:
                    d = dilation if after_stride else previous
                conv.dilation = (d, d)
                conv.padding = (d * (conv.kernel_size[0] // 2), d * (conv.kernel_size[1] // 2))
            if block.downsample is not None:
                block.downsample[0].stride = (1, 1)
            block.stride = 1
    return model


def _register_resnet(tv_name: str, description: str):
    @register_backbone(tv_name, description=description, torchvision_name=tv_name,
                       output_strides=tuple(sorted(RESNET_OUTPUT_STRIDES)))
    def builder(in_channels: int = 3, output_stride: int = 32):
        replace = RESNET_OUTPUT_STRIDES[output_stride]
        return _build(tv_name, _resnet_nodes, in_channels, prepare=lambda m: dilate_resnet(m, replace))

    return builder


_register("vgg11_bn", _features_nodes, "VGG-11 with batch norm (Simonyan 2014)")
_register("vgg16_bn", _features_nodes, "VGG-16 with batch norm (Simonyan 2014)")
# aux heads are a training-time device of the classifier; as a backbone they are
# dead weight. transform_input stays off: normalisation is the data pipeline's job.
_register("googlenet", _googlenet_nodes, "GoogLeNet / Inception v1 (Szegedy 2014)", aux_logits=False, init_weights=True)
_register_resnet("resnet18", "ResNet-18 (He 2015); output_stride 8/16/32")
_register_resnet("resnet34", "ResNet-34 (He 2015); output_stride 8/16/32")
_register_resnet("resnet50", "ResNet-50 (He 2015); output_stride 8/16/32")
_register_resnet("resnext50_32x4d", "ResNeXt-50 32x4d (Xie 2016); output_stride 8/16/32")
_register("mobilenet_v2", _features_nodes, "MobileNetV2 (Sandler 2018)")
_register("mobilenet_v3_small", _features_nodes, "MobileNetV3-Small (Howard 2019)")
_register("mobilenet_v3_large", _features_nodes, "MobileNetV3-Large (Howard 2019)")
