"""What a task plugs into the shared recipe loader, trainer and predictor.

A task owns only what is truly its own: its head, loss, data adapters,
metrics and predict-time post-processing. Everything else (recipes, devices,
checkpoints, resume, DDP, progress, the streaming predictor) is shared.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np
import torch
from torch import nn

from visiontk.backbones.base import Backbone
from visiontk.console import err_console
from visiontk.metrics.base import Metric
from visiontk.metrics.report import MANY_CLASSES, Report
from visiontk.outputs.output_file import OutputFile
from visiontk.outputs.plan import PredictionOutputs
from visiontk.outputs.records import JsonlWriter
from visiontk.recipe import EmptySection, Section, TaskSections, format_options
from visiontk.tasks.options.fields import NoOptions

if TYPE_CHECKING:  # the run report's page model; predict never builds a page
    from visiontk.viz.report_html import PageSection


@dataclass(frozen=True)
class PredictContext:
    """What a task's predict hooks read besides the batch."""

    # The task's predict options (tasks/options/), None fields filled from the
    # checkpoint's stored settings.
    options: Any
    classes: list[str]  # the checkpoint's, in index order
    # --batch-size: images per batch, unless the task batches something else
    # (segment with --tile: tiles; see images_per_batch).
    batch_size: int
    # The data set's own id of each class (COCO category ids, mask values), when
    # the checkpoint has them (ckpt["category_ids"]); None: the index is the id.
    category_ids: list[int] | None = None
    # The checkpoint's recipe (plain dict): e.g. where the data set it was trained on lives.
    recipe: dict | None = None


class TaskModel(nn.Module):
    """A shared backbone feeding a task head."""

    # True when the head leaves some backbone parameters out of the output
    # (e.g. it reads a middle feature map): the trainer tells DDP to expect it.
    has_unused_parameters: bool = False

    def __init__(self, backbone: Backbone, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> Any:
        return self.head(self.backbone(x))


class Task:
    name: str = ""
    # The models of the recipe's `model.head` and `loss` sections.
    head_schema: type[Section] = EmptySection
    loss_schema: type[Section] = EmptySection
    # The data.format values the task reads; each format registers the model of
    # its data.options (visiontk.recipe.sections), and a task its own where it
    # reads a format its own way.
    data_formats: tuple[str, ...] = ()
    # Predict-time settings (thresholds etc.) stored in the checkpoint: the
    # defaults of the option fields that name them (tasks/options/fields.py).
    predict_defaults: dict = {}
    # The task's own options of `predict` and `eval` (tasks/options/<task>.py).
    predict_options: type = NoOptions
    eval_options: type = NoOptions

    def data_options(self) -> dict[str, type[Section]]:
        """data.format -> the model of data.options, for each format the task reads."""
        return {name: format_options(name, self.name) for name in self.data_formats}

    def sections(self) -> TaskSections:
        return TaskSections(self.name, self.head_schema, self.loss_schema, self.data_options())

    def validate_recipe(self, recipe, source: str) -> None:
        """Checks that span sections (the sections themselves are validated by their
        models); raise the error of `visiontk.recipe.recipe_error`, naming the key."""

    # -- data ---------------------------------------------------------------
    def has_training_data(self, recipe) -> bool:
        return (Path(recipe.data.root) / recipe.data.train).is_dir()

    def needs_synthesis(self, recipe) -> bool:
        """The recipe asks for a synthetic set, and it is not there yet, or only part of it is
        (a synth stopped part way: its synth.json says so)."""
        from visiontk.data.synth import incomplete_synth

        return recipe.data.synthetic is not None and (not self.has_training_data(recipe)
                                                      or incomplete_synth(recipe.data.root))

    def prepare_data(self, recipe) -> None:
        """Generate the synthetic set when the recipe asks for one and it is not there yet."""
        s = recipe.data.synthetic
        if self.needs_synthesis(recipe):
            err_console.print(f"generating the synthetic shapes set into {recipe.data.root}", highlight=False)
            self.synthesize(Path(recipe.data.root), n=s.n, size=s.size, seed=s.seed)

    def synthesize(self, root: Path, n: int, size: int, seed: int) -> None:
        """Write the task's synthetic shapes set (data/synth.py) into `root`."""
        raise NotImplementedError

    def build_dataset(self, recipe, split: str, train: bool, classes: list[str] | None = None, root: str | None = None,
                      preprocess=None):
        """Return (dataset, class_names) for a split. `preprocess` (data/preprocess.py)
        turns its files into inputs: a checkpoint's for evaluation; default: the recipe's."""
        raise NotImplementedError

    def eval_dataset(self, recipe, split: str, classes: list[str], root: str | None, preprocess, options: Any):
        """The dataset `eval` scores. `options`: an `eval_options` (tasks/options/), filled
        from the checkpoint; e.g. segment's `at` decides the size of its masks."""
        return self.build_dataset(recipe, split, train=False, classes=classes, root=root, preprocess=preprocess)

    def collate(self, batch: list) -> tuple[torch.Tensor, Any] | None:
        """Stack a batch; samples a dataset skipped (None: unreadable image) are
        left out, and a batch with nothing left is None (the loops skip it)."""
        kept = [b for b in batch if b is not None]
        return torch.utils.data.default_collate(kept) if kept else None

    def targets_to(self, targets: Any, device: torch.device) -> Any:
        return targets.to(device, non_blocking=True) if torch.is_tensor(targets) else targets

    # -- model --------------------------------------------------------------
    def build_head(self, recipe, backbone: Backbone, num_classes: int) -> nn.Module:
        raise NotImplementedError

    def build_model(self, recipe, backbone: Backbone, num_classes: int) -> nn.Module:
        return TaskModel(backbone, self.build_head(recipe, backbone, num_classes))

    def build_loss(self, recipe, num_classes: int):
        """A callable (outputs, targets) -> (loss tensor, {name: float})."""
        raise NotImplementedError

    # -- evaluation ---------------------------------------------------------
    # The loop itself is the engine's (engine/evaluator.py), the same for every task.
    def metric(self, classes: list[str], options: Any, dataset: Any = None) -> Metric:
        """A fresh metric for one evaluation of the split (visiontk.metrics.base.Metric);
        its `compute` must hold 'fitness' (higher is better) for best.pt.

        `options`: an `eval_options`, unset fields filled from the checkpoint or the task's defaults.
        `dataset`: the split being scored (e.g. segment asks it at which size its masks are)."""
        raise NotImplementedError

    def eval_outputs(self, outputs: Any, targets: Any, classes: list[str], options: Any) -> tuple[Any, Any]:
        """(predictions, truths) for `metric().update` from one batch's model outputs and
        collated targets: where post-processing (decoding, NMS) happens. By default, as they are."""
        return outputs, targets

    def report(self, metrics: dict, classes: list[str]) -> Report:
        """The tables `eval` prints for `metrics`."""
        raise NotImplementedError

    def metric_scalars(self, metrics: dict) -> dict:
        """The scalar metrics that go into results.csv."""
        return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}

    def per_class_scores(self, metrics: dict, classes: list[str]) -> dict[str, list]:
        """Per-class values for per_class.csv, metric name -> one value per class (None where
        undefined); the first metric is the one the epoch line ranks classes by."""
        return {}

    def write_eval_plots(self, metrics: dict, classes: list[str], plots_dir: Path, suffix: str = "") -> list[Path]:
        """The task's own plots; by default the confusion matrix where the metric keeps one
        (classify, segment). Detection draws its PR curves instead."""
        if "confusion_matrix" not in metrics:
            return []
        from visiontk.viz.plots import plot_confusion_matrix

        path = Path(plots_dir) / f"confusion_matrix{suffix}.png"
        plot_confusion_matrix(metrics["confusion_matrix"], classes, path)
        return [path]

    def eval_plots(self, metrics: dict, classes: list[str], plots_dir: Path, suffix: str = "") -> list[Path]:
        """The task's plots and, past MANY_CLASSES classes (where a confusion matrix or a legend
        is no longer read class by class), per_class_<metric>.png: the classes sorted by the
        first of `per_class_scores`."""
        written = self.write_eval_plots(metrics, classes, plots_dir, suffix)
        scores = self.per_class_scores(metrics, classes) if len(classes) > MANY_CLASSES else {}
        if scores:
            from visiontk.viz.plots import plot_per_class_bars

            metric, values = next(iter(scores.items()))
            written.append(plot_per_class_bars(dict(zip(classes, values)), metric,
                                               Path(plots_dir) / f"per_class_{metric}{suffix}.png"))
        return written

    # -- the run report (engine/run_report.py) --------------------------------
    def report_sections(self, metrics: dict, classes: list[str]) -> list[PageSection]:
        """The task's own figures of the run report, from the last validation's metrics
        (as saved in the run's val_metrics.json): confusion matrix, PR curves, IoU..."""
        return []

    def report_samples(self, model: nn.Module, dataset: Any, classes: list[str],
                       device: torch.device) -> dict[str, bytes]:
        """{file name: PNG} of validation images with the predictions drawn against the
        truth (engine/run_report.py SAMPLE_FIGURES names the files and their headings)."""
        return {}

    def stored_settings(self, ckpt: dict) -> dict:
        """The predict settings a checkpoint stored, over the task's own defaults
        (which an older checkpoint may lack): what unset option fields are filled from."""
        return {**self.predict_defaults, **ckpt.get("predict", {})}

    # -- prediction ---------------------------------------------------------
    def prediction_outputs(self, options: Any, out: OutputFile) -> PredictionOutputs:
        """What `predict` writes for these options: by default one JSON line per image to `out`.

        Called before the checkpoint is loaded: a bad output folder fails at once."""
        return PredictionOutputs(JsonlWriter, stream=out)

    def keeps_input_image(self, context: PredictContext) -> bool:
        """True when `postprocess` needs the decoded image (meta["image"]), e.g. to draw on it."""
        return False

    def images_per_batch(self, context: PredictContext) -> int:
        """Images decoded per batch; a task that batches something else (tiles) may take fewer."""
        return context.batch_size

    def predict_input_size(self, input_size: tuple[int, int], context: PredictContext) -> tuple[int, int] | None:
        """The (h, w) the predictor resizes every image to: the checkpoint's input size by default.

        None keeps each image at its own size (e.g. segmentation predicted in tiles
        at full resolution); `predict_forward` then gets tensors of different sizes.
        """
        return input_size

    def predict_forward(self, model: nn.Module, images: list[torch.Tensor], device: torch.device,
                        context: PredictContext) -> Any:
        """Raw outputs for one batch of normalised images ([C, H, W] each), handed to `postprocess`."""
        return model(torch.stack(images).to(device, non_blocking=True))

    def cam_scores(self, outputs: torch.Tensor, context: PredictContext) -> tuple[torch.Tensor, list[str]]:
        """`predict --cam`: the score per image ([N]) whose Grad-CAM map is drawn, and its class names."""
        raise NotImplementedError(f"{self.name}: no --cam")

    def postprocess(self, outputs: Any, metas: list[dict], context: PredictContext) -> Iterable[dict]:
        """Turn a batch of raw outputs into one record per image, for the writers of
        `prediction_outputs` (JSON-able, but for what those writers turn into files)."""
        raise NotImplementedError


def shown_image(image: torch.Tensor, preprocess) -> np.ndarray:
    """A normalised CHW input back to uint8 HWC: the pixels the model saw (for drawing)."""
    mean = torch.tensor(preprocess.mean, dtype=torch.float32)[:, None, None]
    std = torch.tensor(preprocess.std, dtype=torch.float32)[:, None, None]
    pixels = (image.float().cpu() * std + mean).clamp(0, 1) * 255
    return pixels.round().to(torch.uint8).permute(1, 2, 0).numpy()


@torch.no_grad()
def outputs_for(model: nn.Module, dataset: Any, indices: Iterable[int], device: torch.device,
                batch_size: int = 32) -> Iterable[tuple[int, torch.Tensor, Any, Any]]:
    """(index, input, target, output) for the items of `dataset` at `indices`, in batches,
    model in eval mode; an item the dataset skips (None: unreadable) is left out."""
    model.eval()
    chunk: list = []

    def run(chunk):
        images = torch.stack([item[0] for _, item in chunk]).to(device)
        out = model(images)
        for k, (i, item) in enumerate(chunk):
            yield i, item[0], item[1], (out[k] if torch.is_tensor(out) else [o[k] for o in out])

    for i in indices:
        item = dataset[i]
        if item is None:
            continue
        chunk.append((i, item))
        if len(chunk) == batch_size:
            yield from run(chunk)
            chunk = []
    if chunk:
        yield from run(chunk)


def spread_indices(length: int, count: int) -> list[int]:
    """`count` indices evenly spread over range(length): a split sorted by class shows them all."""
    count = min(count, length)
    return sorted({round(k * (length - 1) / max(1, count - 1)) for k in range(count)})
