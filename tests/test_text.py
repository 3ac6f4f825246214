"""Sentence classification: vocabulary, the Kim CNN, word vectors, the order-dependent synthetic set, predict on stdin."""
from __future__ import annotations

import json
import re

import pytest
import torch
from helpers import SEED, run_cli, torch_threads

from visiontk.backbones.registry import create_backbone
from visiontk.data.synth_text import NEGATIVE, POSITIVE, synth_text
from visiontk.data.text import TextOptions, TextPreprocess, build_vocabulary, read_text_file
from visiontk.engine.build import build_model
from visiontk.engine.checkpoint import load_checkpoint
from visiontk.errors import UserError
from visiontk.tasks.recipes import recipe_from_dict


def test_vocabulary_and_encoding():
    vocab = build_vocabulary(["The cat sat.", "the dog sat", "A cat!"], min_freq=2)
    # <pad>, <unk>, then tokens seen twice or more, most frequent first, ties alphabetical.
    assert vocab == ("<pad>", "<unk>", "cat", "sat", "the")
    pre = TextPreprocess(vocab, max_len=4)
    assert pre.encode("the cat sat on the mat").tolist() == [4, 2, 3, 1]  # cut after max_len; 'on' unknown
    assert pre.encode("Cat").tolist() == [2, 0, 0, 0]  # lower-cased, padded with 0
    with pytest.raises(UserError, match="must start with <pad> and <unk>"):
        TextPreprocess(("cat", "<pad>", "<unk>"))


def test_kim_cnn_is_max_over_time_of_each_width(one_thread):
    torch.manual_seed(0)
    b = create_backbone("kim_cnn", vocab=("<pad>", "<unk>", *"abcdefgh"), embed_dim=8, filters=4).eval()
    ids = torch.randint(0, 10, (3, 9))
    with torch.no_grad():
        pooled = b(ids)[-1].amax(-1)
        x = b.body[0](ids).transpose(1, 2)  # the embedded sentence, [N, D, T]
        convs = b.body[2].convs
        # Kim 2014: for each filter width, ReLU(conv) over the valid positions, max over time; concatenated.
        expected = torch.cat([torch.relu(c(x)).amax(-1) for c in convs], dim=1)
    assert [c.kernel_size[0] for c in convs] == [3, 4, 5]
    assert b.out_channels == [12] and torch.allclose(pooled, expected)


def _text_recipe(root, backbone: str, **extra) -> object:
    raw = {"task": "classify", "model": {"backbone": backbone, "in_channels": 1, "backbone_options": {"embed_dim": 3}},
           "data": {"format": "text", "root": str(root), "options": {"max_len": 8}}}
    raw["model"].update(extra)
    return recipe_from_dict(raw)


@pytest.mark.parametrize("header", ["", "3 3\n"])  # GloVe, and word2vec's text format (a count/dim line)
def test_word_vectors_from_a_text_file(tmp_path, header):
    (tmp_path / "train.tsv").write_text("text\tlabel\ngood film\tpos\nbad film\tneg\n")
    vectors = tmp_path / "vectors.txt"
    vectors.write_text(header + "good 1 2 3\nzebra 9 9 9\nfilm -1 0.5 0\n")
    model = build_model(_text_recipe(tmp_path, "kim_cnn", pretrained=str(vectors)), 2)
    emb = model.backbone.embedding.weight
    vocab = model.backbone.vocab
    assert emb[vocab.index("good")].tolist() == [1, 2, 3] and emb[vocab.index("film")].tolist() == [-1, 0.5, 0]
    assert emb[0].tolist() == [0, 0, 0]  # <pad> stays zero
    vectors.write_text("good 1 2\n")
    with pytest.raises(UserError, match=re.escape(f"{vectors}:1: vectors of 2 values, the embedding has 3")):
        build_model(_text_recipe(tmp_path, "kim_cnn", pretrained=str(vectors)), 2)


def test_synthetic_sentences_depend_on_word_order(tmp_path):
    synth_text(tmp_path / "a", n=400, seed=3)
    synth_text(tmp_path / "b", n=400, seed=3)
    assert (tmp_path / "a" / "train.tsv").read_bytes() == (tmp_path / "b" / "train.tsv").read_bytes()
    texts, labels = read_text_file(tmp_path / "a" / "train.tsv", TextOptions())
    assert len(texts) == 300 and set(labels) == {"positive", "negative"}
    negated_count = 0
    for text, label in zip(texts, labels):
        words = text.split()
        assert words.count("not") == 1
        (at,) = [i for i, w in enumerate(words) if w in POSITIVE + NEGATIVE]
        negated = at > 0 and words[at - 1] == "not"
        negated_count += negated
        # The label, derived again from the words: the sentiment's, flipped by "not" right before it.
        assert label == ("positive" if (words[at] in POSITIVE) != negated else "negative")
    assert 0.35 < negated_count / len(texts) < 0.65


def _train(root, backbone: str, options: dict, head: dict, runs):
    from visiontk.engine.trainer import Trainer

    raw = {"task": "classify", "name": backbone,
           "model": {"backbone": backbone, "in_channels": 1, "backbone_options": options, "head": head},
           "data": {"format": "text", "root": str(root), "options": {"max_len": 16}},
           "train": {"epochs": 8, "batch_size": 20, "optimizer": "adamw", "lr": 0.01, "weight_decay": 0.0001,
                     "schedule": "cosine", "seed": SEED}, "output": {"plots": False}}
    result = Trainer(recipe_from_dict(raw), device="cpu", project=str(runs)).fit()
    return result


@pytest.fixture(scope="module")
def sentences(tmp_path_factory):
    root = tmp_path_factory.mktemp("sentences")
    synth_text(root, n=800, seed=0)
    return root


@pytest.mark.outcome
def test_kim_cnn_beats_bag_of_words_on_word_order(sentences, tmp_path_factory, outcome):
    # Calibration (tests/calibration/run.py -k kim_cnn_beats; default, aten-avx2+onednn-avx2 and
    # aten-default, seeds 0 1 2): val top-1 Kim 0.975 / 1.000 / 0.975 and bag of words 0.490 / 0.475 /
    # 0.480, identical under the three settings. Break kim-order-lost (every Kim filter one word
    # wide, so a bag of words too): Kim 0.51, caught. Thresholds: Kim >= 0.9, bag of words <= 0.7
    # (chance is 0.5 by construction of the set).
    runs = tmp_path_factory.mktemp("runs")
    with torch_threads(1):
        kim = _train(sentences, "kim_cnn", {"embed_dim": 32, "filters": 32}, {"pool": "max", "dropout": 0.2}, runs)
        bow = _train(sentences, "text_bow", {"embed_dim": 32}, {"pool": "avg", "hidden": 16}, runs)
    kim_top1, bow_top1 = kim["metrics"]["top1"], bow["metrics"]["top1"]
    outcome(kim_top1=kim_top1, bow_top1=bow_top1)
    assert kim_top1 >= 0.9 and bow_top1 <= 0.7, (kim_top1, bow_top1)

    ckpt_path = runs / "classify" / "kim_cnn" / "best.pt"
    ckpt = load_checkpoint(ckpt_path)
    texts, _ = read_text_file(sentences / "train.tsv", TextOptions())
    # The vocabulary travels in the checkpoint, built from the training split.
    assert ckpt["preprocess"]["vocab"] == list(build_vocabulary(texts))
    r = run_cli("classify", "predict", str(ckpt_path), "-", "--topk", "1",
                stdin="the plot was not good\n\nnot once did i say the plot was good\n")
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(rec["path"], rec["text"]) for rec in records] == [
        ("<stdin>:1", "the plot was not good"), ("<stdin>:3", "not once did i say the plot was good")]
    assert [rec["label"] for rec in records] == ["negative", "positive"]


def test_tampered_vocabulary_is_refused(sentences, tmp_path):
    from visiontk.engine.build import checkpoint_meta
    from visiontk.engine.checkpoint import FORMAT, VERSION

    recipe = _text_recipe(sentences, "text_bow")
    model = build_model(recipe, 2)
    meta = checkpoint_meta(recipe, ["negative", "positive"])
    meta["preprocess"]["vocab"] = meta["preprocess"]["vocab"][1:]  # <pad> gone
    path = tmp_path / "bad.pt"
    torch.save({"format": FORMAT, "version": VERSION, **meta, "model": model.state_dict()}, path)
    with pytest.raises(UserError, match=re.escape(f"{path}: ") + ".*preprocess.vocab.*must start with <pad>"):
        load_checkpoint(path)
