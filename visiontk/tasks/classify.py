"""Classification of images, 1-D signals and sentences: a pooled (or flattened) linear
head on the deepest backbone feature.

What the input is (image | signal | text) is the data's business: the modality
of data.format (data/modality.py) reads the files and builds the preprocessing;
this task is the same for all three.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Iterable, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from visiontk.data.modality import IMAGE, modality, modality_name
from visiontk.backbones.normalization import recipe_preprocess
from visiontk.metrics.classification import ClassificationMetric, classification_report
from visiontk.outputs.cam_writer import with_cam_folder
from visiontk.outputs.plan import PredictionOutputs
from visiontk.outputs.records import CsvWriter, JsonlWriter
from visiontk.recipe import EmptySection, Fraction, Section, recipe_error
from visiontk.tasks.base import Task, outputs_for, shown_image
from visiontk.tasks.options.classify import ClassifyFormat, ClassifyPredictOptions
from visiontk.tasks.registry import register_task
from visiontk.viz.report_html import Heatmap, PageSection

# The run report's sample grids: images per grid, and how many validation images are
# searched for the worst classified (bounds the extra pass on a large split).
REPORT_GRID = 16
REPORT_SCAN = 5000
# The --out names that choose the results format when --format is not given.
OUT_SUFFIXES = {".csv": ClassifyFormat.csv, ".jsonl": ClassifyFormat.jsonl, ".ndjson": ClassifyFormat.jsonl}


class ClassifyHeadOptions(Section):
    # Global max pooling learns "is the shape anywhere" far faster than average
    # pooling on small data (calibration: 90% in 5 epochs vs 20). flatten: no
    # pooling, a linear layer on every position of the feature (the course's
    # MNIST-1D CNN); the model then takes its input size only.
    pool: Literal["avg", "max", "flatten"] = "avg"
    dropout: Fraction = 0.0
    hidden: Annotated[int, Field(ge=0)] = 0  # 0: a single linear layer


class ClassifyLossOptions(EmptySection):
    """Cross-entropy has no options of its own (train.label_smoothing is shared)."""


class GlobalPool(nn.Module):
    """[N, C, ...] -> [N, C]: the mean or max over every position, in 1-D and 2-D alike;
    or (flatten) every position kept, [N, C x positions]."""

    def __init__(self, mode: str = "avg"):
        super().__init__()
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "flatten":
            return x.flatten(1)
        x = x.flatten(2)
        return x.amax(-1) if self.mode == "max" else x.mean(-1)


class ClassifierHead(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, pool: str = "avg", dropout: float = 0.0, hidden: int = 0):
        """in_channels: the pooled feature's size (channels x positions for `flatten`)."""
        super().__init__()
        self.pool = GlobalPool(pool)
        layers: list[nn.Module] = [nn.Flatten(), nn.Dropout(dropout)]
        if hidden:
            layers += [nn.Linear(in_channels, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            in_channels = hidden
        layers.append(nn.Linear(in_channels, num_classes))
        self.fc = nn.Sequential(*layers)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.fc(self.pool(features[-1]))


class ClassifyTask(Task):
    name = "classify"
    head_schema = ClassifyHeadOptions
    loss_schema = ClassifyLossOptions
    data_formats = ("imagefolder", "signals", "text")
    predict_defaults = {"topk": 5}
    predict_options = ClassifyPredictOptions

    def data_options(self) -> dict:
        for name in self.data_formats:
            modality(name)  # imports the module that reads the format, which registers its options
        return super().data_options()

    def validate_recipe(self, recipe, source: str) -> None:
        if modality_name(recipe.data.format) != IMAGE and recipe.data.augment:
            raise recipe_error(source, "data.augment", f"image augmentations do not apply to data.format "
                                                       f"{recipe.data.format}; remove them")
        if recipe.data.augment:  # (a checkpoint's recipe comes without: predict never loads albumentations)
            from visiontk.data.transforms import build_augmentations

            build_augmentations(recipe.data.augment, source)  # a bad transform names the recipe file, before any work
        if isinstance(recipe.data.classes, dict):
            raise recipe_error(source, "data.classes", "must be a list of names here ({id: name} maps are for "
                                                       "segment's mask values)")

    def synthesize(self, root: Path, n: int, size: int, seed: int) -> None:
        from visiontk.data.synth import synth_classify

        synth_classify(root, n=n, size=size, seed=seed)

    def has_training_data(self, recipe) -> bool:
        return modality(recipe.data.format).has_training_data(recipe)

    def prepare_data(self, recipe) -> None:
        kind, s = modality(recipe.data.format), recipe.data.synthetic
        if self.needs_synthesis(recipe):
            from visiontk.console import err_console

            err_console.print(f"generating the synthetic {kind.synthetic_set} set into {recipe.data.root}",
                              highlight=False)
            kind.synthesize(Path(recipe.data.root), s)

    def build_dataset(self, recipe, split: str, train: bool, classes=None, root=None, preprocess=None):
        from visiontk.data.transforms import build_augmentations

        data = recipe.data
        augment = build_augmentations(data.augment) if train else []
        return modality(data.format).classification_data(recipe, split, train, classes, root,
                                                         preprocess or recipe_preprocess(recipe), augment)

    def build_head(self, recipe, backbone, num_classes: int) -> nn.Module:
        h = recipe.model.head
        features = backbone.out_channels[-1]
        if h.pool == "flatten":
            if backbone.input_shape is None:
                raise recipe_error("recipe", "model.head.pool", "flatten needs a fixed input size")
            features = math.prod(backbone.feature_shape(backbone.input_shape))
        return ClassifierHead(features, num_classes, h.pool, h.dropout, h.hidden)

    def build_loss(self, recipe, num_classes: int):
        smoothing = recipe.train.label_smoothing

        def loss_fn(logits, labels):
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=smoothing)
            return loss, {"ce": loss.item()}

        return loss_fn

    def metric(self, classes, options, dataset=None) -> ClassificationMetric:
        return ClassificationMetric(len(classes))

    def eval_outputs(self, outputs, targets, classes, options):
        return outputs.float().cpu(), targets

    def metric_scalars(self, metrics: dict) -> dict:
        return {k: metrics[k] for k in ("top1", "top5", "loss") if k in metrics}

    def per_class_scores(self, metrics: dict, classes: list[str]) -> dict[str, list]:
        # Recall is the class's own accuracy; a class without validation images has none.
        support = metrics["support"]
        return {"recall": [r if support[i] else None for i, r in enumerate(metrics["recall"])],
                "precision": list(metrics["precision"]), "images": list(support)}

    def report(self, metrics: dict, classes: list[str]):
        return classification_report(metrics, classes)

    def report_sections(self, metrics, classes) -> list[PageSection]:
        if "confusion_matrix" not in metrics:
            return []
        return [PageSection("Confusion matrix", [Heatmap(classes, classes, metrics["confusion_matrix"], caption=(
            "rows: true class, columns: predicted; numbers: images; shade: share of the true class"))])]

    def report_samples(self, model, dataset, classes, device) -> dict[str, bytes]:
        """The first validation images, and the worst classified: lowest probability of the
        true class over the first REPORT_SCAN images of the split (a pass as long as one
        validation over them)."""
        from visiontk.viz.sample_grid import PRED_COLOUR, WRONG_COLOUR, sample_grid_png

        if getattr(dataset.preprocess, "kind", "image") != "image":
            return {}  # signals and sentences: nothing to draw as an image grid
        scored = []
        for i, image, label, logits in outputs_for(model, dataset, range(min(len(dataset), REPORT_SCAN)), device):
            probs = F.softmax(logits.float(), 0)
            scored.append((float(probs[label]), i, image, int(label), int(probs.argmax()), float(probs.max())))
        if not scored:
            return {}
        paths = getattr(dataset, "samples", None)

        def tile(entry):
            p_true, i, image, label, pred, p = entry
            name = Path(paths[i][0]).name if paths else f"#{i}"
            return {"image": shown_image(image, dataset.preprocess),
                    "title": f"{name}\ntrue {classes[label]}\npred {classes[pred]} {p:.2f}",
                    "title_colour": PRED_COLOUR if pred == label else WRONG_COLOUR}

        worst = sorted(scored, key=lambda e: (e[0], e[1]))[:REPORT_GRID]
        spread = [scored[round(k * (len(scored) - 1) / max(1, REPORT_GRID - 1))] for k in range(min(REPORT_GRID, len(scored)))]
        return {"val_samples.png": sample_grid_png([tile(e) for e in spread]),
                "worst_classified.png": sample_grid_png([tile(e) for e in worst])}

    def prediction_outputs(self, options: ClassifyPredictOptions, out) -> PredictionOutputs:
        fmt = out.format_by_name(options.format, OUT_SUFFIXES, ClassifyFormat.jsonl, "classify predict")
        outputs = PredictionOutputs(CsvWriter if fmt == ClassifyFormat.csv else JsonlWriter, stream=out)
        return with_cam_folder(outputs, options.cam, out.overwrite) if options.cam else outputs

    def cam_scores(self, outputs, context):
        """The top-1 class's logit (before the softmax, as Grad-CAM's paper takes it)."""
        top = outputs.argmax(1)
        return outputs.gather(1, top[:, None])[:, 0], [context.classes[i] for i in top.tolist()]

    def postprocess(self, outputs, metas, context) -> Iterable[dict]:
        classes = context.classes
        k = max(1, min(context.options.topk, len(classes)))
        probs, idx = F.softmax(outputs.float(), dim=1).topk(k, dim=1)
        for meta, p, i in zip(metas, probs.tolist(), idx.tolist()):
            record = {
                # The input's names (data/modality.py `item_meta`): its path, and a stdin sentence's text.
                **{key: meta[key] for key in ("path", "text") if key in meta},
                "label": classes[i[0]],
                "prob": round(p[0], 6),
                "topk": [{"label": classes[j], "prob": round(q, 6)} for j, q in zip(i, p)],
            }
            if "cam" in meta:  # --cam: written by outputs/cam_writer.py
                record["cam"] = meta["cam"]
            yield record


register_task(ClassifyTask())
