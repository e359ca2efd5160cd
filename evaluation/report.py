"""Figures (PNG) and a self-contained HTML report of an evaluation.

Everything is drawn with Pillow (no plotting library); the HTML embeds the
PNGs as base64 data URIs, so ``report.html`` can be mailed or archived alone.
"""
import base64
import html
import io
import json
import os
from typing import Dict, List, Sequence

import numpy as np
from PIL import Image, ImageDraw


def to_uint8(image: np.ndarray) -> np.ndarray:
  """float [H, W, 3] in [0, 1] -> uint8."""
  return np.clip(np.round(np.asarray(image) * 255.0), 0, 255).astype(np.uint8)


def grid(rows: Sequence[Sequence[np.ndarray]], pad: int = 2) -> np.ndarray:
  """Tiles equally sized float images [H, W, 3] in [0, 1] into one uint8."""
  height, width = np.asarray(rows[0][0]).shape[:2]
  columns = max(len(r) for r in rows)
  out = np.full((len(rows) * (height + pad) + pad,
                 columns * (width + pad) + pad, 3), 255, np.uint8)
  for i, row in enumerate(rows):
    for j, image in enumerate(row):
      y, x = pad + i * (height + pad), pad + j * (width + pad)
      out[y:y + height, x:x + width] = to_uint8(image)
  return out


def error_colormap(errors_mm: np.ndarray, max_mm: float) -> np.ndarray:
  """Per-vertex errors -> RGB in [0, 1]: blue (0) - green - red (max_mm+)."""
  t = np.clip(np.asarray(errors_mm, np.float32) / max(max_mm, 1e-6), 0, 1)
  red = np.clip(2 * t - 1, 0, 1)
  blue = np.clip(1 - 2 * t, 0, 1)
  green = 1 - red - blue
  return np.stack([red, green, blue], axis=-1)


def histogram_png(series: Dict[str, np.ndarray], bins: int = 30,
                  value_range=(-1.0, 1.0), size=(480, 240)) -> np.ndarray:
  """Overlaid normalised histograms, one colour per series (uint8 image)."""
  palette = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40)]
  width, height = size
  image = Image.new("RGB", size, "white")
  draw = ImageDraw.Draw(image)
  edges = np.linspace(value_range[0], value_range[1], bins + 1)
  counts = {name: np.histogram(np.asarray(v), bins=edges)[0] /
            max(len(v), 1) for name, v in series.items()}
  top = max(max(c.max() for c in counts.values()), 1e-9)
  plot_height = height - 40
  for k, (name, c) in enumerate(counts.items()):
    color = palette[k % len(palette)]
    points = []
    for b in range(bins):
      x0 = 10 + (width - 20) * b / bins
      x1 = 10 + (width - 20) * (b + 1) / bins
      y = 10 + plot_height * (1 - c[b] / top)
      points += [(x0, y), (x1, y)]
    draw.line(points, fill=color, width=2)
    draw.text((10 + 150 * k, height - 22), name, fill=color)
  draw.line([(10, 10 + plot_height), (width - 10, 10 + plot_height)],
            fill="black")
  draw.text((10, 10 + plot_height + 2), f"{value_range[0]:g}", fill="black")
  draw.text((width - 30, 10 + plot_height + 2), f"{value_range[1]:g}",
            fill="black")
  return np.asarray(image)


def _data_uri(image: np.ndarray) -> str:
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="PNG")
  return "data:image/png;base64," + base64.b64encode(
      buffer.getvalue()).decode("ascii")


def write_report(eval_dir: str, metrics: Dict,
                 figures: List[Dict]) -> Dict[str, str]:
  """Writes ``metrics.json``, one PNG per figure and ``report.html``.

  Args:
    eval_dir: output folder (created).
    metrics: JSON-serialisable metrics.
    figures: dicts with ``name`` (file stem), ``title``, ``caption`` and
      ``image`` (uint8 [H, W, 3]).

  Returns:
    name -> path of every file written.
  """
  os.makedirs(eval_dir, exist_ok=True)
  written = {}
  metrics_path = os.path.join(eval_dir, "metrics.json")
  with open(metrics_path + ".tmp", "w") as f:
    json.dump(metrics, f, indent=2, sort_keys=True, default=_json_default)
    f.write("\n")
  os.replace(metrics_path + ".tmp", metrics_path)
  written["metrics.json"] = metrics_path
  sections = []
  for figure in figures:
    path = os.path.join(eval_dir, figure["name"] + ".png")
    Image.fromarray(figure["image"]).save(path)
    written[figure["name"] + ".png"] = path
    sections.append(
        f"<h2>{html.escape(figure['title'])}</h2>"
        f"<p>{html.escape(figure.get('caption', ''))}</p>"
        f"<img src=\"{_data_uri(figure['image'])}\" "
        f"alt=\"{html.escape(figure['title'])}\">")
  page = ("<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
          "<title>unsup3dmm evaluation</title><style>body{font-family:sans-"
          "serif;max-width:1100px;margin:auto}pre{background:#f4f4f4;"
          "padding:8px;overflow:auto}img{max-width:100%}</style></head><body>"
          "<h1>unsup3dmm evaluation</h1><h2>Metrics</h2><pre>" +
          html.escape(json.dumps(metrics, indent=2, sort_keys=True,
                                 default=_json_default)) + "</pre>" +
          "".join(sections) + "</body></html>\n")
  report_path = os.path.join(eval_dir, "report.html")
  with open(report_path, "w") as f:
    f.write(page)
  written["report.html"] = report_path
  return written


def _json_default(value):
  if isinstance(value, (np.floating, np.integer)):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  raise TypeError(f"not JSON serialisable: {type(value)}")
