"""The recipe schema: every section shared by all tasks, with its bounds.

Three sections belong to the task and the data format: `model.head`, `loss`
and `data.options`. The schema leaves them as type parameters; `parse.py`
fills them with the models the task registers (`Recipe[Head, Loss, Options]`),
so a validated recipe holds typed objects all the way down
(`recipe.model.head.S`, `recipe.data.options.mask_suffix`).
"""
from __future__ import annotations

from typing import Annotated, Generic, Literal, Optional, TypeVar, Union

from pydantic import AfterValidator, Field, ValidationInfo, model_validator

from visiontk.recipe.fields import AnyMapping, Expected, Fraction, Number, Section, rule, rule_error, section

HeadT = TypeVar("HeadT", bound=Section)
LossT = TypeVar("LossT", bound=Section)
OptionsT = TypeVar("OptionsT", bound=Section)

Count = Annotated[int, Field(ge=0)]
PositiveInt = Annotated[int, Field(ge=1)]
PositiveNumber = Annotated[Number, Field(gt=0)]
MAX_IMAGE_SIZE = 8192


def _one_or_three(values: list) -> bool:
    return len(values) in (1, 3)


def _no_output_stride(options: dict) -> dict:
    # One place for it: model.output_stride (bounded, and what build_model passes on).
    if "output_stride" in options:
        raise rule_error("belongs in model.output_stride", key="output_stride", show_value=False)
    return options


class ModelConfig(Section, Generic[HeadT]):
    backbone: str = "tinycnn"
    # Options passed to the backbone builder (e.g. width for tinycnn).
    backbone_options: Annotated[AnyMapping, AfterValidator(_no_output_stride)] = Field(default_factory=dict)
    # Stride of the deepest feature (ResNet family): 16 or 8 turn the last
    # stages' stride 2 into dilation (torchvision's replace_stride_with_dilation);
    # None: the backbone's own (32). A rule, not a Literal: see in_channels.
    output_stride: Optional[Annotated[int, rule(lambda s: s in (8, 16, 32), "must be 8, 16 or 32")]] = None
    # none | imagenet | a torchvision weights name (IMAGENET1K_V2) | a file path
    pretrained: str = "none"
    # A rule, not Literal[1, 3]: a Literal would take `true` for 1.
    in_channels: Annotated[int, rule(lambda c: c in (1, 3), "must be 1 or 3")] = 3
    # The task's head options (its head_schema).
    head: HeadT = section()


class SynthConfig(Section):
    """Generate the synthetic shapes set into data.root when it is missing."""

    n: PositiveInt = 600
    size: PositiveInt = 64
    seed: int = 0


class DataConfig(Section, Generic[OptionsT]):
    format: str = "imagefolder"
    root: Annotated[str, Field(min_length=1)]
    train: str = "train"
    val: str = "val"
    # Class names in index order, or (segment, data.format masks) an {id: name}
    # map whose ids are the mask values, gaps allowed (0, 7, 200).
    classes: Annotated[Optional[Union[list[str], dict[Annotated[int, Field(ge=0, le=255)], str]]],
                       Expected("a list of class names, or an {id: name} map (segment masks)")] = None
    # At most 8192: one 8192 x 8192 RGB input is already 805 MB as float32, and a
    # typo (640000) would otherwise end in an allocation failure deep in the first batch.
    image_size: Annotated[
        Union[Annotated[int, Field(ge=8, le=MAX_IMAGE_SIZE)],
              Annotated[list[Annotated[int, Field(ge=8, le=MAX_IMAGE_SIZE)]], Field(min_length=2, max_length=2)]],
        Expected(f"an integer from 8 to {MAX_IMAGE_SIZE} or a list [height, width] of them"),
    ] = 64
    # None: the backbone's (pretrained weights') normalisation.
    mean: Optional[Annotated[list[Number], rule(_one_or_three, "must have 1 or 3 values")]] = None
    std: Optional[Annotated[list[PositiveNumber], rule(_one_or_three, "must have 1 or 3 values")]] = None
    # A list of {AlbumentationsTransformName: {params}} applied to training images
    # (checked by data/transforms.py, which knows the transforms).
    augment: list = Field(default_factory=list)
    # How images are brought to image_size (data/preprocess.py RESIZE_RULES, where
    # the default was measured) and whether JPEGs much larger than it are decoded
    # at 1/2, 1/4 or 1/8 scale; used alike by training, eval, predict and embed,
    # saved in checkpoints (key preprocess).
    resize: Literal["bilinear", "area_from_2x"] = "bilinear"
    jpeg_draft: bool = True
    # What to do with a bad image or annotation: skip it with a warning, or stop.
    bad_annotations: Literal["skip", "error"] = "skip"
    # The options of data.format (annotation files etc.): the model the format registers.
    options: OptionsT = section()
    synthetic: Optional[SynthConfig] = None


class TrainConfig(Section):
    epochs: PositiveInt = 10
    batch_size: PositiveInt = 32
    optimizer: Literal["sgd", "adamw", "adam"] = "sgd"
    lr: PositiveNumber = 0.01
    momentum: Fraction = 0.9
    weight_decay: Annotated[Number, Field(ge=0)] = 5e-4
    schedule: Literal["none", "step", "cosine", "onecycle"] = "cosine"
    step_size: PositiveInt = 10
    gamma: Number = 0.1
    # Linear warmup, in iterations or (adapting to the data set's size) in epochs,
    # fractions allowed (0.5: half an epoch); give one of the two. A warmup longer
    # than half of the run's (or stage's) iterations is cut to half with a note
    # (engine/fit_to_data.py).
    warmup_iters: Count = 0
    warmup_epochs: Optional[Annotated[Number, Field(ge=0)]] = None
    label_smoothing: Fraction = 0.0
    # auto: mixed precision on CUDA (bf16 where supported, else fp16), off on CPU;
    # true/false force it (true on the CPU means bf16 autocast); bf16 | fp16 | fp32
    # name the precision (bf16 on a CPU with AVX-512 BF16/AMX trains ~2x faster).
    amp: Union[bool, Literal["auto", "bf16", "fp16", "fp32"]] = "auto"
    # NHWC activations and weights (auto: on for CUDA; see engine/performance.py).
    channels_last: Union[bool, Literal["auto"]] = "auto"
    # torch.compile the model (slow start, faster steps on long runs; needs a C++ compiler or Triton).
    compile: bool = False
    # The torch.compile backend: inductor generates fused kernels (what makes compile
    # pay); aot_eager and eager only trace (seconds instead of a C++ build), the
    # first step when a model fails to compile, as torch's troubleshooting guide says.
    compile_backend: Literal["inductor", "aot_eager", "eager"] = "inductor"
    grad_clip: Optional[PositiveNumber] = None
    # Stop when the validation fitness has not improved for this many epochs (0: never).
    patience: Count = 0
    seed: int = 0
    workers: Count = 0
    eval_every: PositiveInt = 1

    @model_validator(mode="after")
    def _one_warmup(self) -> "TrainConfig":
        # warmup_iters 0 with warmup_epochs is what every saved recipe holds: both present.
        if self.warmup_epochs is not None and self.warmup_iters > 0:
            raise rule_error(f"and 'train.warmup_iters' ({self.warmup_iters}) both give the warmup; set one of them "
                             f"(e.g. --set train.warmup_iters=0)", key="warmup_epochs", show_value=False)
        return self


class StageConfig(Section):
    """One fine-tuning stage; the stages run one after the other in one run (engine/stages.py)."""

    epochs: PositiveInt
    name: str = ""
    # What trains: 'head' (the backbone frozen; linear probing when it is the
    # only stage), 'all', or an integer K: the head and the K deepest backbone
    # blocks (blocks = the backbone's stages at increasing stride).
    trainable: Annotated[Union[Literal["head", "all"], Count], Expected("'head', 'all' or a block count >= 0")] = "all"
    # The head's learning rate in this stage (default train.lr).
    lr: Optional[PositiveNumber] = None
    # Backbone learning rate = lr x backbone_lr_scale for its deepest block, and
    # x layer_decay once more for each shallower block (layer-wise rates).
    backbone_lr_scale: PositiveNumber = 1.0
    layer_decay: Annotated[Number, Field(gt=0, le=1)] = 1.0
    # Frozen blocks always keep batch norm in eval mode; 'frozen' does so for the
    # trainable backbone blocks too (running statistics stay ImageNet's).
    bn: Literal["train", "frozen"] = "train"
    warmup_iters: Optional[Count] = None  # default train.warmup_iters


class OutputConfig(Section):
    project: str = "runs"
    name: Optional[str] = None
    plots: bool = True


class Recipe(Section, Generic[HeadT, LossT, OptionsT]):
    task: str
    name: Annotated[str, Field(min_length=1, pattern=r"^[^/]*$"), Expected("a non-empty name without '/'")] = "run"
    model: ModelConfig[HeadT] = section()
    data: DataConfig[OptionsT] = section()
    train: TrainConfig = section()
    # The task's loss options (its loss_schema).
    loss: LossT = section()
    output: OutputConfig = section()
    # Fine-tuning stages (transfer learning); empty means one plain stage.
    stages: list[StageConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _epochs_are_the_stages(self, info: ValidationInfo) -> "Recipe":
        """With stages, train.epochs is their total (the trainer counts epochs over the whole run)."""
        if not self.stages:
            return self
        total = sum(s.epochs for s in self.stages)
        if "epochs" in self.train.model_fields_set and self.train.epochs != total:
            # E.g. --set stages=... on a recipe written for one plain stage.
            from visiontk.console import warn

            source = (info.context or {}).get("source", "recipe")
            warn(f"{source}: 'train.epochs' ({self.train.epochs}) is replaced by the sum of the stages' epochs ({total})")
        self.train.epochs = total
        return self

    @property
    def image_size(self) -> tuple[int, int]:
        s = self.data.image_size
        return (s, s) if isinstance(s, int) else (int(s[0]), int(s[1]))

    def to_dict(self) -> dict:
        """Plain values only: what recipe.yaml and checkpoints hold."""
        return self.model_dump()
