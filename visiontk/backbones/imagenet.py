"""The full ImageNet classifier of a pretrained backbone: backbone + pooled linear layer.

Checks that weights are loaded right (a real photo of a cat must come out as
a cat before any fine-tuning) and gives the 1000-class predictions some users
want as they are. Only backbones whose ImageNet classifier is a single linear
layer on the globally average-pooled last feature qualify; the spec says
under which key prefix that layer's weights are.
"""
from __future__ import annotations

from torch import nn

from visiontk.backbones.pretrained import load_backbone_weights, pretrained_state, resolve_pretrained
from visiontk.backbones.registry import create_backbone, get_backbone_spec
from visiontk.errors import UserError

# torchvision's key of the final linear layer, for the backbones where it sits
# directly on the pooled last feature (VGG and MobileNetV3 have an MLP there).
_TORCHVISION_CLASSIFIER = {"resnet18": "fc", "resnet34": "fc", "resnet50": "fc", "resnext50_32x4d": "fc",
                           "googlenet": "fc", "mobilenet_v2": "classifier.1"}


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet-1k class names, in the order of every ImageNet classifier here."""
    import torchvision

    return list(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


class ImageNetClassifier(nn.Module):
    def __init__(self, backbone: nn.Module, fc: nn.Linear):
        super().__init__()
        self.backbone = backbone
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = fc

    def forward(self, x):
        return self.fc(self.pool(self.backbone(x)[-1]).flatten(1))


def imagenet_classifier(backbone_name: str, pretrained: str = "imagenet") -> tuple[nn.Module, dict]:
    """(model in eval mode, info with categories, mean, std, input_size) for `backbone_name`."""
    spec = get_backbone_spec(backbone_name)
    key = (spec.package_weights or {}).get("classifier") or _TORCHVISION_CLASSIFIER.get(backbone_name)
    if key is None:
        raise UserError(f"{backbone_name}: no single-layer ImageNet classifier to rebuild")
    ref = resolve_pretrained(backbone_name, pretrained)
    state, source = pretrained_state(backbone_name, pretrained)
    backbone = create_backbone(backbone_name)
    load_backbone_weights(backbone, state, source)
    if f"{key}.weight" not in state:
        raise UserError(f"{source}: has no classifier weights '{key}.weight'")
    weight, bias = state[f"{key}.weight"], state[f"{key}.bias"]
    fc = nn.Linear(weight.shape[1], weight.shape[0])
    fc.load_state_dict({"weight": weight, "bias": bias})
    model = ImageNetClassifier(backbone, fc).eval()
    return model, {"categories": imagenet_categories(), "mean": ref["mean"], "std": ref["std"],
                   "input_size": ref["input_size"] or [224, 224]}
