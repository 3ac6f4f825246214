"""What every format shares: the (h, w) image header size, the path rule, the policy and its report."""
import pytest
from PIL import Image

from visiontk.data.formats import issues as issues_module
from visiontk.data.formats.files import image_size, load_json, load_yaml
from visiontk.data.formats.issues import MAX_WARNINGS, Issues
from visiontk.data.formats.paths import inside
from visiontk.errors import DataError


@pytest.mark.parametrize("orientation, hw", [(None, (10, 30)), (1, (10, 30)), (3, (10, 30)), (6, (30, 10)), (8, (30, 10))])
def test_image_size_is_height_width_as_displayed(tmp_path, orientation, hw):
    path = tmp_path / "r.jpg"
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    Image.new("RGB", (30, 10)).save(path, exif=exif)  # stored 30 wide, 10 high
    assert image_size(path) == hw


def test_image_size_of_a_broken_file_is_a_data_error(tmp_path):
    (tmp_path / "x.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"x.png: cannot read image"):
        image_size(tmp_path / "x.png")


def test_inside_keeps_names_in_their_root():
    assert inside("/data/images", "a/b.jpg").as_posix() == "/data/images/a/b.jpg"
    assert inside("/data/images", "a/../b.jpg").as_posix() == "/data/images/b.jpg"
    for name in ("../images2/x.jpg", "../../etc/passwd", "a/../../x", "/etc/passwd", "/data/images/a.jpg", ""):
        assert inside("/data/images", name) is None, name


def test_unreadable_json_and_yaml_are_one_line_data_errors(tmp_path):
    (tmp_path / "a.json").write_text('{"images": [}')
    (tmp_path / "a.yaml").write_text("names: [a, b\n")
    with pytest.raises(DataError, match=r"a.json: not valid JSON \(Expecting value: line 1 column 13"):
        load_json(tmp_path / "a.json")
    with pytest.raises(DataError, match=r"a.yaml: not valid YAML at line 2"):
        load_yaml(tmp_path / "a.yaml")
    with pytest.raises(DataError, match=r"b.json: no such file"):
        load_json(tmp_path / "b.json")


def test_skip_warns_up_to_the_cap_then_once_with_the_summary(monkeypatch):
    warnings = []
    monkeypatch.setattr(issues_module, "warn", warnings.append)
    issues = Issues("ann.json", "skip")
    for i in range(MAX_WARNINGS + 5):
        issues("box_empty" if i % 2 else "malformed", f"ann.json: annotation id {i}", "zero size")
    report = issues.finish()
    assert report.total == MAX_WARNINGS + 5 and len(report.messages) == MAX_WARNINGS + 5
    assert warnings[:2] == ["ann.json: annotation id 0: zero size (skipped)", "ann.json: annotation id 1: zero size (skipped)"]
    assert len(warnings) == MAX_WARNINGS + 1
    assert warnings[-1] == "5 more problems not shown; ann.json: 25 problems (12 box_empty, 13 malformed)"


def test_error_raises_at_the_first_problem_with_one_line():
    issues = Issues("ann.json", "error")
    with pytest.raises(DataError) as e:
        issues("malformed", "ann.json: annotation id 3", "bbox must be\n[x, y, w, h]")
    assert str(e.value) == "ann.json: annotation id 3: bbox must be [x, y, w, h]"
    with pytest.raises(ValueError):
        Issues("ann.json", "ignore")
