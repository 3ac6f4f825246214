"""Property tests: any input gives a valid result or the documented error, never another exception.

Recipes and --set overrides: a Recipe or a UserError. Box encoding: a round
trip for any valid box. Annotation readers (COCO json, YOLO txt, VOC xml,
segmentation masks and COCO polygons): valid records or a DataError.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import types
import typing
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from visiontk.errors import DataError, UserError

# derandomize: the same examples every run (a suite that passes keeps passing;
# raise VISIONTK_FUZZ_EXAMPLES and set VISIONTK_FUZZ_RANDOM=1 to explore more).
# database=None: nothing is written into the repository (.hypothesis/).
FAST = settings(max_examples=int(os.environ.get("VISIONTK_FUZZ_EXAMPLES", "60")), deadline=None, database=None,
                derandomize=os.environ.get("VISIONTK_FUZZ_RANDOM") != "1",
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(autouse=True)
def quiet_warnings(monkeypatch):
    """Readers warn for every bad entry; thousands of lines would only slow the run."""
    from visiontk.data.formats import issues

    monkeypatch.setattr(issues, "warn", lambda message: None)


# ------------------------------------------------------------------ values

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.integers(), st.floats(),
    st.text(max_size=10), st.sampled_from(["auto", "sgd", "skip", "max", "none", "1e-3", "imagefolder", ".inf"]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                           max_size=3), max_leaves=6)


def _model(tp) -> bool:
    from pydantic import BaseModel

    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _typed(tp) -> st.SearchStrategy:
    """Values of the annotated type, near the edges of what the checks accept."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return _typed(args[0])
    if isinstance(tp, typing.TypeVar):  # a task's section (model.head, loss, data.options)
        return _typed(dict)
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*[st.none() if a is type(None) else _typed(a) for a in args])
    if origin is list or tp is list:
        return st.lists(_typed(args[0]) if args else plausible, max_size=3)
    if _model(tp):
        return st.fixed_dictionaries({}, optional={name: _typed(f.annotation) for name, f in tp.model_fields.items()})
    return {int: st.integers(-2, 300), float: st.floats(-1.0, 2.0) | st.sampled_from([1e-3, 0.0, 0.99, 1.0]),
            bool: st.booleans(), str: st.sampled_from(["tinycnn", "lenet5", "data", "run", "none", "", "x/y"]),
            dict: st.dictionaries(st.sampled_from(["width", "pool", "x"]), plausible, max_size=2)}.get(tp, plausible)


def _schema_keys() -> dict[str, st.SearchStrategy]:
    """Every dotted key of the recipe schema with a strategy for its type, plus a
    few keys that do not exist."""
    from visiontk.recipe import Recipe

    keys = {}
    for name, f in Recipe.model_fields.items():
        tp = typing.get_origin(f.annotation) or f.annotation  # ModelConfig[HeadT] -> ModelConfig
        keys[name] = _typed(tp) | plausible
        if _model(tp):
            for sub, g in tp.model_fields.items():
                keys[f"{name}.{sub}"] = _typed(g.annotation) | plausible
    for extra in ("model.head.pool", "model.head.dropout", "model.head.hidden", "model.head.x", "train.lrr", "zzz"):
        keys[extra] = plausible
    return keys


plausible = st.one_of(
    st.integers(-2, 300), st.floats(-1.0, 2.0), st.booleans(), st.none(),
    st.sampled_from(["sgd", "adamw", "cosine", "step", "auto", "skip", "error", "max", "avg", "tinycnn", "lenet5",
                     "imagefolder", "coco", "masks", "data", "1e-3", ".nan", "run/x", ""]),
    st.lists(st.integers(0, 300), max_size=3), st.lists(st.floats(0.0, 1.0), max_size=3), values,
)
SCHEMA_KEYS = _schema_keys()


def _nest(task, flat: list[tuple[str, object]]) -> dict:
    raw = {"task": task, "data": {"root": "data"}}
    for path, value in flat:
        node, parts = raw, path.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    return raw


raw_recipes = st.builds(
    _nest, st.one_of(*[st.sampled_from(["classify", "classify", "detect", "segment"])] * 5, values),
    st.lists(st.sampled_from(sorted(SCHEMA_KEYS)).flatmap(lambda k: st.tuples(st.just(k), SCHEMA_KEYS[k])), max_size=4),
)


def _has_nan(obj) -> bool:
    if isinstance(obj, float):
        return math.isnan(obj)
    if isinstance(obj, dict):
        return any(_has_nan(v) for v in obj.values())
    if isinstance(obj, list):
        return any(_has_nan(v) for v in obj)
    return False


@FAST
@given(raw=raw_recipes)
def test_any_recipe_mapping_gives_a_recipe_or_a_user_error(raw):
    from visiontk.recipe import Recipe, dump_recipe
    from visiontk.tasks.recipes import recipe_from_dict

    try:
        recipe = recipe_from_dict(raw, source="fuzz.yaml")
    except UserError as e:
        assert str(e).startswith("fuzz.yaml") and "\n" not in str(e)
        event("UserError")
        return
    event("Recipe")
    assert isinstance(recipe, Recipe)
    # What is accepted can be saved (recipe.yaml of a run) and loaded back unchanged.
    again = recipe_from_dict(yaml.safe_load(dump_recipe(recipe)), source="again")
    if not _has_nan(recipe.to_dict()):
        assert again.to_dict() == recipe.to_dict()


KEYS = ["train.lr", "train.epochs", "train.batch_size", "train.amp", "data.image_size", "data.mean", "model.head.pool",
        "model.backbone_options.width", "data.augment", "task", "name", "train", "model.head", "x.y.z", "stages"]
override = st.one_of(
    st.text(max_size=20),
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS) | st.text(max_size=8), st.text(max_size=12)),
    st.builds(lambda k, v: f"{k}={yaml.safe_dump(v, default_flow_style=True).strip()}", st.sampled_from(KEYS), values),
)


@pytest.fixture(scope="module")
def good_recipe(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fuzz-recipe") / "r.yaml"
    path.write_text("task: classify\ndata:\n  root: data\n")
    return path


@FAST
@given(overrides=st.lists(override, max_size=4))
def test_any_overrides_give_a_recipe_or_a_user_error(good_recipe, overrides):
    from visiontk.recipe import Recipe
    from visiontk.tasks.recipes import load_recipe

    try:
        assert isinstance(load_recipe(good_recipe, overrides), Recipe)
    except UserError as e:
        assert "\n" not in str(e)


@FAST
@given(text=st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_any_recipe_file_gives_a_recipe_or_a_user_error(good_recipe, text):
    from visiontk.recipe import Recipe
    from visiontk.tasks.recipes import load_recipe

    path = good_recipe.with_name("any.yaml")
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    try:
        assert isinstance(load_recipe(path), Recipe)
    except UserError as e:
        assert str(e).startswith(str(path)) and "\n" not in str(e)


# ------------------------------------------------------------- box encoding

unit = st.floats(0.0, 1.0, allow_nan=False)
size = st.floats(1e-3, 1.0, allow_nan=False)
boxes_cxcywh = st.lists(st.tuples(unit, unit, size, size), min_size=1, max_size=12)


@FAST
@given(box=st.tuples(unit, unit, size, size), S=st.integers(1, 16), C=st.integers(1, 6), data=st.data())
def test_one_box_encodes_and_decodes_back(box, S, C, data):
    from visiontk.tasks.detect.encode import TARGET_BOX, TARGET_CLS, TARGET_OBJ, cell_indices, decode_grid_boxes, encode_targets

    label = data.draw(st.integers(0, C - 1))
    target = encode_targets(torch.tensor([box]), torch.tensor([label]), S, C)
    assert target.shape == (S, S, 5 + C)
    obj = target[..., TARGET_OBJ].nonzero().tolist()
    col, row = (int(cell_indices(torch.tensor([v]), S)) for v in box[:2])
    assert obj == [[row, col]]
    assert target[row, col, TARGET_CLS:].argmax().item() == label and target[row, col, TARGET_CLS:].sum() == 1
    x, y = target[row, col, 0].item(), target[row, col, 1].item()
    assert 0.0 <= x <= 1.0 and 0.0 <= y <= 1.0  # 1.0 only on the right/bottom border
    decoded = decode_grid_boxes(target[..., TARGET_BOX])[row, col]
    assert torch.allclose(decoded, torch.tensor(box), atol=1e-5)


@FAST
@given(boxes=boxes_cxcywh, S=st.integers(1, 12), C=st.integers(1, 5), data=st.data())
def test_encoded_ground_truth_decodes_to_the_boxes_kept(boxes, S, C, data):
    """Encode -> a perfect head output -> decode_predictions gives back one box per
    occupied cell: the largest box whose centre is in it, with its class."""
    from visiontk.tasks.detect.decode import decode_predictions
    from visiontk.tasks.detect.encode import TARGET_OBJ, cell_indices, encode_targets

    labels = data.draw(st.lists(st.integers(0, C - 1), min_size=len(boxes), max_size=len(boxes)))
    b, lab = torch.tensor(boxes), torch.tensor(labels)
    target = encode_targets(b, lab, S, C)
    B = 2
    pred = torch.zeros(1, S, S, 5 * B + C)
    pred[0, ..., 0:2] = target[..., 0:2]
    pred[0, ..., 2:4] = target[..., 2:4].sqrt()  # the head predicts sqrt(w), sqrt(h)
    pred[0, ..., 4] = target[..., TARGET_OBJ]
    pred[0, ..., 5 * B:] = target[..., 5:]
    (det,) = decode_predictions(pred, conf_threshold=0.5, iou_threshold=1.0, max_det=S * S * B, B=B)

    cells = (cell_indices(b[:, 1], S) * S + cell_indices(b[:, 0], S)).tolist()
    area = (b[:, 2] * b[:, 3]).tolist()  # in float32, as the encoder compares them
    expected = []
    for cell in sorted(set(cells)):
        members = [i for i, c in enumerate(cells) if c == cell]
        winner = max(members, key=lambda i: (area[i], -i))  # the largest, ties: the first
        cx, cy, w, h = boxes[winner]
        expected.append(([min(max(v, 0.0), 1.0) for v in (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)],
                         labels[winner]))
    got = list(zip(det["boxes"].tolist(), det["labels"].tolist()))
    assert len(got) == len(expected)
    for box, label in expected:  # one to one, within float tolerance
        match = next((g for g in got if g[1] == label and np.allclose(g[0], box, atol=1e-4)), None)
        assert match is not None, (box, label, got)
        got.remove(match)


@FAST
@given(S=st.integers(1, 8), C=st.integers(1, 4), data=st.data())
def test_bad_targets_are_value_errors(S, C, data):
    from visiontk.tasks.detect.encode import encode_targets

    label = data.draw(st.integers(C, C + 5) | st.integers(-5, -1))
    with pytest.raises(ValueError):
        encode_targets(torch.tensor([[0.5, 0.5, 0.2, 0.2]]), torch.tensor([label]), S, C)
    with pytest.raises(ValueError):
        encode_targets(torch.zeros(2, 4), torch.zeros(3, dtype=torch.long), S, C)


# ------------------------------------------------------------- annotation readers

@pytest.fixture(scope="module")
def ann_dir(tmp_path_factory) -> Path:
    """images/a.png (20x10), images/b.png (8x8), images/c.png (not an image)."""
    d = tmp_path_factory.mktemp("fuzz-ann")
    (d / "images").mkdir()
    Image.new("RGB", (20, 10), (10, 200, 30)).save(d / "images" / "a.png")
    Image.new("RGB", (8, 8), (200, 10, 30)).save(d / "images" / "b.png")
    (d / "images" / "c.png").write_bytes(b"not an image")
    return d


json_values = st.recursive(st.none() | st.booleans() | st.integers(-50, 50) | st.floats(-100, 100) | st.text(max_size=8)
                           | st.sampled_from(["a.png", "b.png", "c.png", "../../etc/passwd", "/etc/passwd", "missing.png"]),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                        max_size=4), max_leaves=10)
weird = st.none() | st.booleans() | st.text(max_size=3) | st.floats() | json_values
FILES = [("a.png", 20, 10), ("b.png", 8, 8), ("c.png", 5, 5), ("missing.png", 4, 4), ("../../etc/passwd", 10, 10),
         ("/etc/passwd", 3, 3), ("sub/../a.png", 20, 10), ("../images/a.png", 20, 10), ("", 1, 1)]


def _image_entry(i, file, mutate):
    entry = {"id": i, "file_name": file[0], "width": file[1], "height": file[2]}
    if mutate is not None:
        key, value = mutate
        if value == "<drop>":
            entry.pop(key)
        else:
            entry[key] = value
    return entry


coco_image = st.builds(_image_entry, st.integers(1, 4), st.sampled_from(FILES),
                       st.none() | st.none() | st.tuples(st.sampled_from(["id", "file_name", "width", "height"]),
                                                         st.just("<drop>") | st.integers(-3, 40) | weird))
coord = st.integers(-5, 30) | st.floats(-5.0, 30.0)
coco_ann = st.fixed_dictionaries(
    {"id": st.integers(0, 50), "image_id": st.integers(0, 5) | weird, "category_id": st.sampled_from([1, 2, 3, 99]) | weird},
    optional={"bbox": st.lists(coord, min_size=4, max_size=4) | st.lists(coord, max_size=5) | weird,
              "segmentation": st.lists(st.lists(coord, min_size=6, max_size=10), min_size=1, max_size=2) | weird,
              "iscrowd": st.sampled_from([0, 0, 0, 1]) | weird},
)
coco_cat = st.fixed_dictionaries({"id": st.integers(1, 3) | weird, "name": st.sampled_from(["cat", "dog", "bird"]) | weird})
coco_files = st.one_of(
    json_values,
    st.fixed_dictionaries({}, optional={
        "images": st.lists(coco_image | json_values, max_size=4) | weird,
        "annotations": st.lists(coco_ann | json_values, max_size=6) | weird,
        "categories": st.lists(coco_cat | json_values, max_size=3) | weird,
    }),
    st.fixed_dictionaries({
        "images": st.lists(coco_image, min_size=1, max_size=4),
        "annotations": st.lists(coco_ann, max_size=8),
        "categories": st.just([{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]),
    }),
)


def check_detection_records(records, names) -> None:
    for r in records:
        assert r.boxes.shape == (len(r.labels), 4) and r.width > 0 and r.height > 0
        if len(r.labels):
            assert (r.boxes[:, 0] < r.boxes[:, 2]).all() and (r.boxes[:, 1] < r.boxes[:, 3]).all()
            assert (r.boxes >= 0).all() and (r.boxes[:, [0, 2]] <= r.width).all() and (r.boxes[:, [1, 3]] <= r.height).all()
            assert ((r.labels >= 0) & (r.labels < len(names))).all()


def _write(directory: Path, name: str, text: str) -> Path:
    path = Path(tempfile.mkdtemp(dir=directory)) / name
    path.write_text(text, encoding="utf-8")
    return path


@FAST
@given(content=coco_files, policy=st.sampled_from(["skip", "error"]))
def test_any_coco_detection_json_gives_records_or_a_data_error(ann_dir, content, policy):
    from visiontk.data.formats.coco import read_coco

    path = _write(ann_dir, "ann.json", json.dumps(content))
    try:
        found = read_coco(path, ann_dir / "images", policy=policy)
        records, names = found.records, found.classes
    except DataError as e:
        assert "\n" not in str(e)
        event("DataError")
        return
    event(f"{min(len(records), 2)}+ records" if records else "no records")
    check_detection_records(records, names)
    assert all(Path(r.image).parent == ann_dir / "images" for r in records)  # never outside the image root


@FAST
@given(content=coco_files, policy=st.sampled_from(["skip", "error"]))
def test_any_coco_segmentation_json_gives_records_or_a_data_error(ann_dir, content, policy):
    from visiontk.data.formats.coco import read_coco
    from visiontk.tasks.segment.formats import coco_mask_records
    from visiontk.tasks.segment.readers import check_records, load_mask

    path = _write(ann_dir, "ann.json", json.dumps(content))
    try:
        found = read_coco(path, ann_dir / "images", policy=policy)
        records, names = coco_mask_records(found, None)
        records = check_records(records, len(names), policy)
    except DataError as e:
        assert "\n" not in str(e)
        event("DataError")
        return
    event(f"{min(len(records), 2)}+ records" if records else "no records")
    assert names[0] == "background"
    for r in records:
        assert Path(r.image).parent == ann_dir / "images"
        mask = load_mask(r)
        assert mask.dtype == np.uint8 and ((mask < len(names)) | (mask == 255)).all()


yolo_token = st.sampled_from(["0", "1", "2", "-1", "0.5", "0.25", "1.5", "nan", "inf", "1e9", "x", "", "0.0", "1"]) \
    | st.floats().map(str) | st.text(max_size=4)
yolo_lines = st.lists(st.lists(yolo_token, max_size=7).map(" ".join), max_size=6).map("\n".join) | st.text(max_size=60)


@FAST
@given(labels=yolo_lines, policy=st.sampled_from(["skip", "error"]))
def test_any_yolo_label_file_gives_records_or_a_data_error(tmp_path_factory, labels, policy):
    from visiontk.data.formats.yolo import read_yolo

    root = tmp_path_factory.mktemp("yolo")
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    Image.new("RGB", (20, 10)).save(root / "images" / "train" / "a.png")
    (root / "labels" / "train" / "a.txt").write_text(labels, encoding="utf-8")
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nnames: [cat, dog]\n")
    try:
        found = read_yolo(root / "data.yaml", "train", policy=policy)
        records, names = found.records, found.classes
    except DataError as e:
        assert "\n" not in str(e)
        event("DataError")
        return
    event(f"{min(len(records), 2)}+ records" if records else "no records")
    check_detection_records(records, names)


xml_text = st.sampled_from(["a.png", "b.png", "c.png", "../../etc/passwd", "/etc/passwd", "0", "1", "5", "20", "-3",
                            "nan", "1e9", "cat", "dog", "", "   "]) | st.text(max_size=5)
xml_number = st.integers(-3, 30).map(str) | st.floats(-3, 30).map(str) | xml_text


def _element(tag: str, child) -> st.SearchStrategy:
    return child.map(lambda c: f"<{tag}>{c}</{tag}>")


def _bndbox(values: list[str], tags: list[str]) -> str:
    return "<bndbox>" + "".join(f"<{t}>{v}</{t}>" for t, v in zip(tags, values)) + "</bndbox>"


bndbox = st.builds(_bndbox, st.lists(xml_number, min_size=4, max_size=4),
                   st.just(["xmin", "ymin", "xmax", "ymax"]) | st.lists(st.sampled_from(["xmin", "ymin", "xmax", "ymax",
                                                                                         "x"]), max_size=4))
voc_object = st.tuples(_element("name", st.sampled_from(["cat", "dog", "bird"]) | xml_text) | st.just(""),
                       bndbox | st.just("")).map(lambda t: "<object>" + "".join(t) + "</object>")
voc_files = st.one_of(
    st.text(max_size=80),
    st.builds(lambda f, size, objs: f"<annotation>{f}{size}{''.join(objs)}</annotation>",
              _element("filename", st.sampled_from([f for f, _, _ in FILES]) | xml_text),
              st.builds(lambda w, h: f"<size><width>{w}</width><height>{h}</height></size>", xml_number, xml_number)
              | st.just(""),
              st.lists(voc_object, max_size=4)),
)


@FAST
@given(xml=voc_files, policy=st.sampled_from(["skip", "error"]), names=st.none() | st.just(["cat", "dog"]))
def test_any_voc_xml_gives_records_or_a_data_error(ann_dir, xml, policy, names):
    from visiontk.data.formats.voc import read_voc

    xml_file = _write(ann_dir, "x.xml", xml)
    try:
        found = read_voc(xml_file.parent, ann_dir / "images", class_names=names, policy=policy)
        records, class_names = found.records, found.classes
    except DataError as e:
        assert "\n" not in str(e)
        event("DataError")
        return
    event(f"{min(len(records), 2)}+ records" if records else "no records")
    check_detection_records(records, class_names)
    assert all(Path(r.image).parent == ann_dir / "images" for r in records)


masks = st.tuples(st.integers(1, 12), st.integers(1, 12), st.sampled_from(["L", "P", "RGB", "I;16", "1"]),
                  st.integers(0, 255)) | st.tuples(st.just(6), st.just(8), st.sampled_from(["L", "P"]), st.integers(0, 6))


@FAST
@given(mask=masks, num_classes=st.none() | st.integers(1, 5), policy=st.sampled_from(["skip", "error"]))
def test_any_mask_gives_a_record_or_a_data_error(tmp_path_factory, mask, num_classes, policy):
    from visiontk.data.formats.masks import read_mask_folders
    from visiontk.tasks.segment.formats import mask_records
    from visiontk.tasks.segment.readers import check_records, load_mask

    h, w, mode, top = mask
    root = tmp_path_factory.mktemp("masks")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    Image.new("RGB", (8, 6)).save(root / "images" / "a.png")
    values = np.random.default_rng(top).integers(0, top + 1, (h, w))
    img = Image.fromarray(values.astype(np.uint8), "L")
    img = img.convert(mode) if mode != "I;16" else Image.fromarray(values.astype(np.uint16))
    img.save(root / "masks" / "a.png")
    try:
        found = read_mask_folders(root / "images", root / "masks", policy=policy)
        records = check_records(mask_records(found), num_classes, policy, found.report)
    except DataError as e:
        assert "\n" not in str(e)
        event("DataError")
        return
    event(f"{min(len(records), 2)}+ records" if records else "no records")
    for r in records:
        m = load_mask(r)
        assert m.shape == (6, 8)
        if num_classes is not None:
            assert ((m < num_classes) | (m == 255)).all()
