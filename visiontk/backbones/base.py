"""The backbone contract every head consumes.

`forward(x) -> list[Tensor]`: feature maps at increasing stride, described by
`out_channels` and `strides`. Nothing outside `backbones/` reaches into a
backbone's layers by name.
"""
from __future__ import annotations

import torch
import torch.fx
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Backbone(nn.Module):
    """Wraps a feature extractor `body` (returning a list of features) with its metadata."""

    def __init__(self, name: str, body: nn.Module, in_channels: int = 3, probe_size: int = 64):
        super().__init__()
        self.name = name
        self.body = body
        self.in_channels = in_channels
        self.out_channels, self.strides = self._probe(probe_size)

    @torch.no_grad()
    def _probe(self, size: int) -> tuple[list[int], list[int]]:
        # Channels and strides are measured, not declared, so they can't drift
        # from the real layers.
        was_training = self.training
        self.eval()
        feats = self.forward(torch.zeros(1, self.in_channels, size, size))
        self.train(was_training)
        return [f.shape[1] for f in feats], [size // f.shape[-1] for f in feats]

    # What one input is: (C, H, W) for images, (C, L) for signals; set by whoever
    # builds the model from data (engine/build.py), for heads whose size depends
    # on it (a flattening classifier). None: any size.
    input_shape: tuple[int, ...] | None = None

    @property
    def max_stride(self) -> int:
        return self.strides[-1]

    @torch.no_grad()
    def feature_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """(C, ...spatial) of the deepest feature for one input of `input_shape`."""
        was_training = self.training
        self.eval()
        feats = self.forward(torch.zeros(1, *input_shape))
        self.train(was_training)
        return tuple(feats[-1].shape[1:])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        # Accept 1- and 3-channel input whatever the stem was built for: grey
        # images are repeated into RGB stems (keeps pretrained weights valid),
        # RGB images are averaged into grey stems.
        if x.shape[1] != self.in_channels:
            if x.shape[1] == 1:
                x = x.expand(-1, self.in_channels, -1, -1)
            elif self.in_channels == 1:
                x = x.mean(dim=1, keepdim=True)
            else:
                raise ValueError(f"backbone {self.name} takes 1 or {self.in_channels} channels, got {x.shape[1]}")
        feats = self.body(x)
        return list(feats.values()) if isinstance(feats, dict) else list(feats)

    def stage_modules(self) -> list[nn.Module]:
        """The layers computing each feature from the previous one: one module per entry
        of `strides`, shallowest first, the stem in the first.

        This is how anything outside `backbones/` names the backbone's "blocks"
        (freezing all but the last K, per-block learning rates) without reaching
        into its layers by name. A body may define `stage_modules()` itself;
        torchvision bodies (fx graphs from `create_feature_extractor`) are split at
        their feature nodes; other bodies by the order their layers run in, when
        each feature is the output of a layer (else the body is one single block).
        """
        if hasattr(self.body, "stage_modules"):
            return list(self.body.stage_modules())
        if isinstance(self.body, torch.fx.GraphModule):
            return _split_at_feature_nodes(self.body)
        return _split_by_call_order(self.body, self.in_channels, max(64, 2 * self.strides[-1])) or [self.body]


@torch.no_grad()
def _split_by_call_order(body: nn.Module, in_channels: int, size: int) -> list[nn.Module] | None:
    """Group the leaf modules by the feature they run before, from one probe pass.

    Feature i ends at the last layer whose output shares its storage (an
    in-place ReLU returns its input's). Outputs are kept alive during the pass
    so that no freed address is reused. None when a feature is not a layer's
    output (e.g. a residual sum).
    """
    calls: list[tuple[nn.Module, torch.Tensor]] = []
    leaves = [m for m in body.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(lambda mod, _, out: calls.append((mod, out)) if torch.is_tensor(out) else None)
             for m in leaves]
    was_training = body.training
    body.eval()
    try:
        feats = body(torch.zeros(1, in_channels, size, size))
    finally:
        for h in hooks:
            h.remove()
        body.train(was_training)
    feats = list(feats.values()) if isinstance(feats, dict) else list(feats)
    ends, previous = [], -1
    for f in feats:
        ptr = f.untyped_storage().data_ptr()
        last = max((i for i, (_, out) in enumerate(calls) if out.untyped_storage().data_ptr() == ptr), default=-1)
        if last < previous or last < 0:
            return None
        ends.append(last)
        previous = last
    groups: list[list[nn.Module]] = [[] for _ in feats]
    seen: set[int] = set()
    for i, (mod, _) in enumerate(calls):
        if id(mod) in seen:
            continue
        seen.add(id(mod))
        groups[next((k for k, end in enumerate(ends) if i <= end), len(ends) - 1)].append(mod)
    return [nn.ModuleList(g) for g in groups]


def _split_at_feature_nodes(graph_module: torch.fx.GraphModule) -> list[nn.Module]:
    """Group the modules an fx graph calls by the feature node they come before (graph order)."""
    output = next(n for n in graph_module.graph.nodes if n.op == "output")
    returned = output.args[0]
    feature_nodes = list(returned.values()) if isinstance(returned, dict) else list(returned)
    index = {node: i for i, node in enumerate(feature_nodes)}
    groups: list[list[nn.Module]] = [[] for _ in feature_nodes]
    current, seen = 0, set()
    for node in graph_module.graph.nodes:
        if node.op == "call_module" and node.target not in seen:
            seen.add(node.target)
            groups[min(current, len(groups) - 1)].append(graph_module.get_submodule(node.target))
        if node in index:
            current = max(current, index[node] + 1)
    return [nn.ModuleList(g) for g in groups]


class StagedCNN(nn.Module):
    """A plain sequence of stages; the output of each stage is one feature map."""

    def __init__(self, stages: list[nn.Module]):
        super().__init__()
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats

    def stage_modules(self) -> list[nn.Module]:
        return list(self.stages)


def conv_bn_relu(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )
