"""unsup3dmm.evaluation: metrics and file formats for evaluating predictions.

The geometry and metric modules are NumPy/SciPy only (no TensorFlow import):

* ``alignment``: similarity alignment (Umeyama), per-vertex and per-region
  errors, point-to-plane ICP with isotropic scale.
* ``scan_metrics``: vertex normals, the 95 mm nose-tip crop, the symmetric
  point-to-plane scan distance and the per-setting summary (MICC protocol).
* ``identity_metrics``: cosine similarities, same/different-person pair
  distributions, earth mover's distance, top-k identity recall.
* ``scan_io``: reading OBJ, PLY and VRML 2.0 scans.
* ``now_export``: the NoW challenge submission layout.

Import the modules directly (``from unsup3dmm.evaluation import
scan_metrics``); this package imports none of them itself.
"""
