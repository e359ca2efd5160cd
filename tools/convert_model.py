"""Converts a face model into a BFM-2017-layout .h5 file.

Examples::

  unsup3dmm-convert --source ict \\
      --input ../shared/data/ict_facekit/ict_facekit_light_face_head_neck.npz \\
      --output ict_facekit.h5
  unsup3dmm-convert --source sfm --input sfm_shape_3448.npz --output sfm.h5
  unsup3dmm-convert --source demo --output demo.h5
  unsup3dmm-convert --source npz --input my_model.npz --units cm --output m.h5

The output loads with ``unsup3dmm.model.morphable_model.load_morphable_model``
(and ``--set model.morphable_model=PATH`` in training).  See
:mod:`unsup3dmm.model.converters` for what each source needs.
"""
import argparse
import sys
from typing import Optional, Sequence

from unsup3dmm.model import converters


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="unsup3dmm-convert", description=__doc__.split("\n\n")[0],
      epilog="npz keys: " + "; ".join(
          f"{k}: {v}" for k, v in converters.NPZ_KEYS.items()))
  parser.add_argument("--source", required=True,
                      choices=sorted(converters.SOURCES) + ["demo"],
                      help="kind of input model")
  parser.add_argument("--input", help="input file (not for --source demo)")
  parser.add_argument("--output", required=True, help="output .h5 path")
  parser.add_argument("--units", default="mm",
                      choices=sorted(converters.UNITS_TO_MM),
                      help="shape units of an npz source (default mm)")
  parser.add_argument("--seed", type=int, default=0,
                      help="demo model seed (default 0)")
  return parser


def run(argv: Optional[Sequence[str]] = None) -> int:
  """Console-script entry point; returns the process exit status.

  Args:
    argv: arguments without the program name (None: ``sys.argv[1:]``).

  Returns:
    0 on success, 2 for bad arguments or input (message on stderr).
  """
  args = _parser().parse_args(argv)
  try:
    model = converters.convert(args.source, args.input, args.output,
                               units=args.units, seed=args.seed)
  except ValueError as e:
    print(f"unsup3dmm-convert: error: {e}", file=sys.stderr)
    return 2
  print(f"wrote {args.output}: {model.name}, {model.vertex_count} vertices, "
        f"{model.triangle_count} triangles, {model.shape_components} shape / "
        f"{model.texture_components} colour components")
  return 0


if __name__ == "__main__":
  sys.exit(run())
