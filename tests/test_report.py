"""The run report: report.html written by training, rebuilt by `visiontk report`,
self-contained, escaped, and rendered by a real browser with the network off."""
from __future__ import annotations

import base64
import io
import json
import shutil
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from chromium import find_chromium, load_page
from helpers import run_cli

CLASSIFY_HEADINGS = ["Summary", "Recipe (resolved)", "Data", "Loss curves", "Metric curves", "Learning rate",
                     "Confusion matrix", "Validation samples", "Worst-classified validation images",
                     "Timing and throughput", "Hardware and precision"]


class Page(HTMLParser):
    """h2 headings in order; each section's images, SVG charts, chart lines and shaded
    cells (their rgb); every URL-bearing attribute."""

    def __init__(self, html: str):
        super().__init__()
        self.headings: list[str] = []
        self.images: dict[str, list[str]] = {}
        self.svgs: dict[str, int] = {}
        self.lines: dict[str, int] = {}
        self.shades: dict[str, list[tuple[int, ...]]] = {}
        self.urls: list[tuple[str, str, str]] = []
        self.tags: set[str] = set()
        self._in_h2 = False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self._in_h2 = tag == "h2"
        if self._in_h2:
            self.headings.append("")
        for name, value in attrs:
            if name in ("src", "href", "action", "data", "poster", "srcset"):
                self.urls.append((tag, name, value or ""))
        section = self.headings[-1] if self.headings else ""
        if tag == "img":
            self.images.setdefault(section, []).append(dict(attrs)["src"])
        elif tag == "svg":
            self.svgs[section] = self.svgs.get(section, 0) + 1
        elif tag == "polyline" and len((dict(attrs).get("points") or "").split()) >= 2:
            self.lines[section] = self.lines.get(section, 0) + 1
        elif tag == "td" and "background:rgb(" in (dict(attrs).get("style") or ""):
            rgb = dict(attrs)["style"].split("background:rgb(")[1].split(")")[0]
            self.shades.setdefault(section, []).append(tuple(int(v) for v in rgb.split(",")))

    def handle_endtag(self, tag):
        if tag == "h2":
            self._in_h2 = False

    def handle_data(self, data):
        if self._in_h2:
            self.headings[-1] += data


def png_of(data_uri: str) -> np.ndarray:
    assert data_uri.startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(data_uri.split(",", 1)[1])))
    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        white = Image.new("RGBA", image.size, "white")
        image = Image.alpha_composite(white, image)
    return np.asarray(image.convert("RGB"))


def packed(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


class Screen:
    """A screenshot, to find images drawn in it pixel for pixel (a PNG shown at its natural
    size is drawn unchanged)."""

    def __init__(self, shot: np.ndarray):
        self.pixels = packed(shot)
        self.colours, self.counts = np.unique(self.pixels, return_counts=True)

    def count(self, rgb: tuple[int, ...]) -> int:
        at = np.searchsorted(self.colours, packed(np.array(rgb)))
        return int(self.counts[at]) if at < len(self.colours) and self.colours[at] == packed(np.array(rgb)) else 0

    def shows(self, image: np.ndarray) -> bool:
        """Anchored on the image's colour that is rarest on the screen: each place holding
        it is a candidate position, compared whole."""
        h, w = image.shape[:2]
        H, W = self.pixels.shape
        img = packed(image)
        at = np.searchsorted(self.colours, img).clip(0, len(self.colours) - 1)
        seen = np.where(self.colours[at] == img, self.counts[at], 0)
        if not seen.all():
            return False  # a colour of the image is nowhere on the screen
        ay, ax = divmod(int(np.argmin(seen)), w)
        for y, x in zip(*np.nonzero(self.pixels == img[ay, ax])):
            top, left = y - ay, x - ax
            if 0 <= top <= H - h and 0 <= left <= W - w and \
                    np.array_equal(self.pixels[top:top + h, left:left + w], img):
                return True
        return False


def check_self_contained(page: Page) -> None:
    assert not page.tags & {"script", "link", "iframe", "object", "embed"}
    for tag, attr, value in page.urls:
        assert value.startswith(("data:image/png;base64,", "#")), (tag, attr, value[:80])


def test_training_writes_a_report_that_renders_offline_in_chromium(trained_classifier, tmp_path):
    report = trained_classifier / "report.html"
    html = report.read_text(encoding="utf-8")
    page = Page(html)
    check_self_contained(page)
    assert page.headings[:2] == ["Summary", "Recipe (resolved)"] and set(CLASSIFY_HEADINGS) <= set(page.headings)
    if find_chromium() is None:
        pytest.skip("Chromium is not installed (apt-get install chromium; .ci/run installs it)")

    # The console check itself: it must see what loading anything from outside gives
    # (the page's Content-Security-Policy blocks it, and says so in the console).
    broken = tmp_path / "broken.html"
    broken.write_text(html.replace("</body>", '<img src="http://example.com/x.png"></body>'))
    seen = load_page(broken, tmp_path / "broken", height=600).console
    assert any("example.com" in m for m in seen), seen

    loaded = load_page(report, tmp_path / "report", height=7000)
    assert loaded.console == []
    dom = Page(loaded.dom)
    assert dom.headings == page.headings
    shot = np.asarray(Image.open(loaded.screenshot).convert("RGB"))
    assert shot.shape == (7000, 1200, 3)
    assert (shot.min(axis=2) < 200).mean() > 0.05, "the page rendered (mostly) blank"
    # The figures as the browser drew them: each embedded PNG is in the screenshot, pixel for pixel.
    screen = Screen(shot)
    # The sample grids (PNGs), as the browser drew them: pixel for pixel in the screenshot.
    for heading in ("Validation samples", "Worst-classified validation images"):
        (src,) = dom.images[heading]
        assert screen.shows(png_of(src)), f"{heading}: figure not in the screenshot"
    # And the search can fail: a figure changed by one pixel is not found.
    changed = png_of(dom.images["Validation samples"][0]).copy()
    changed[5, 5] = 255 - changed[5, 5]
    assert not screen.shows(changed)
    # The curves (inline SVG): a line per chart, drawn in its colour (#1f77b4).
    assert dom.lines["Loss curves"] == dom.svgs["Loss curves"] >= 1 and dom.lines["Metric curves"] >= 2
    assert screen.count((0x1F, 0x77, 0xB4)) > 500
    # The confusion matrix (a shaded table): its darkest cell, a diagonal one after training, is on screen.
    darkest = min(dom.shades["Confusion matrix"], key=sum)
    assert sum(darkest) < 300 and screen.count(darkest) > 3 * 300


def test_report_command_rebuilds_and_escapes_untrusted_names(trained_classifier, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_classifier, run, ignore=shutil.ignore_patterns("*.pt", "report.html"))
    info = json.loads((run / "run_info.json").read_text())
    hostile = '<script>alert("x")</script>'
    info["data"]["class names"] = [hostile, "a&b", "$\\frac{1}{0}$"]
    (run / "run_info.json").write_text(json.dumps(info))
    result = run_cli("report", run)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(run / "report.html")
    html = (run / "report.html").read_text(encoding="utf-8")
    page = Page(html)
    check_self_contained(page)  # no <script> element: the class name is text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html and "a&amp;b" in html
    assert page.headings == Page((trained_classifier / "report.html").read_text()).headings

    missing = run_cli("report", tmp_path / "nothing")
    assert missing.returncode == 2 and "not a run directory" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def test_detect_report_has_pr_curves_ap_and_drawn_boxes(trained_detector):
    run = trained_detector["run_dir"]
    page = Page((run / "report.html").read_text(encoding="utf-8"))
    check_self_contained(page)
    heading = "Precision-recall curves and AP per class"
    assert heading in page.headings and page.svgs[heading] == 2  # the PR curves, the AP bars
    assert page.lines[heading] >= 1  # a curve for each class the detector finds
    (src,) = page.images["Validation samples"]
    grid = png_of(src)
    # Predicted boxes (green) and true boxes (orange) are drawn on the validation images.
    for colour in ((0x1A, 0x98, 0x50), (0xF2, 0x8E, 0x2B)):
        assert (np.abs(grid.astype(int) - colour).max(axis=2) == 0).sum() > 50
    metrics = json.loads((run / "val_metrics.json").read_text())["metrics"]
    assert set(metrics["per_class_ap50"]) == {"circle", "square", "triangle"}
