"""Validation images with predictions drawn against the truth, as one PNG (PIL only:
no matplotlib import, which costs ~2 s the first time in a process)."""
from __future__ import annotations

# Prediction (or a right answer) green, wrong red, ground truth orange (the report's caption says so).
PRED_COLOUR, TRUTH_COLOUR, WRONG_COLOUR = "#1a9850", "#f28e2b", "#d73027"
_TAB10 = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
          (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def sample_grid_png(samples: list[dict], cols: int = 4, tile: int = 160) -> bytes:
    """Validation images with what the model said drawn against the truth, as one PNG.

    Drawn with PIL, not matplotlib: 16 small axes took ~1.3 s, this takes tens of ms,
    and the report redraws it during training. Each sample: ``image`` (uint8 HWC or
    HW), ``title`` (lines), optional ``title_colour``, ``boxes`` (list of (xyxy in image
    pixels, text, colour, linestyle); "--" draws thinner), ``mask`` (an HxW class-index
    map tinted over the image, 0 = background and values >= ``num_classes`` untinted).
    """
    import io

    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    line_h = 12
    lines = max([1] + [len(str(s.get("title", "")).splitlines()) for s in samples])
    cell_w, cell_h = tile + 8, tile + 8 + lines * line_h
    n = max(1, len(samples))
    cols = min(cols, n)
    rows = (n + cols - 1) // cols
    sheet = Image.new("RGB", (cols * cell_w, rows * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    for k, s in enumerate(samples):
        image = np.asarray(s["image"])
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[..., 0]
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        mask = s.get("mask")
        if mask is not None:
            k_classes = max(1, s.get("num_classes", 1))
            colours = np.array([_TAB10[i % 10] for i in range(k_classes)], dtype=np.float32)
            tint = colours[np.clip(mask, 0, k_classes - 1)]
            alpha = np.where((mask > 0) & (mask < k_classes), 0.55, 0.0)[..., None]
            image = (image * (1 - alpha) + tint * alpha).round().astype(np.uint8)
        h, w = image.shape[:2]
        scale = tile / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        picture = Image.fromarray(image.astype(np.uint8)).resize(size, Image.NEAREST if scale >= 1 else Image.BILINEAR)
        x0, y0 = (k % cols) * cell_w + 4, (k // cols) * cell_h + 4
        sheet.paste(picture, (x0, y0))
        for xyxy, text, colour, style in s.get("boxes", []):
            a, b, c, d = [float(v) * scale for v in xyxy]
            draw.rectangle([x0 + a, y0 + b, x0 + c, y0 + d], outline=colour, width=1 if style == "--" else 2)
            if text:
                tw = draw.textlength(text, font=font)
                draw.rectangle([x0 + a, y0 + b - line_h, x0 + a + tw + 2, y0 + b], fill=colour)
                draw.text((x0 + a + 1, y0 + b - line_h), text, fill="white", font=font)
        for j, line in enumerate(str(s.get("title", "")).splitlines()):
            draw.text((x0, y0 + tile + 2 + j * line_h), line, fill=s.get("title_colour", "black"), font=font)
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()
