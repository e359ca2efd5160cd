"""Installs unsup3dmm and compiles the rasteriser op against the installed TensorFlow.

The repository root *is* the ``unsup3dmm`` package: ``model/`` installs as
``unsup3dmm.model``, ``renderer/`` as ``unsup3dmm.renderer`` and so on, so a
non-editable install puts a single top-level name into site-packages.

The rasteriser op (``renderer/kernels``) is compiled with the compile and link
flags of the TensorFlow that is importable *while building*.  Build without
isolation so that this is the TensorFlow you will run with::

    pip install "tensorflow>=2.16"
    pip install --no-build-isolation -e .

(``tools/bootstrap.sh`` does exactly this.)  After upgrading TensorFlow rebuild
the op with ``python setup.py build_ext --inplace``.

Dependencies and why:
  tensorflow>=2.16  Keras 3 and the custom-op ABI we compile against.
  keras-facenet     the Inception-ResNet-v1 FaceNet architecture (encoder).
  opencv-python-headless  imported by keras-facenet's package __init__.
  h5py              Basel Face Model 2017 (statismo HDF5) files.
  absl-py           command-line flags and logging of train.py / evaluate.py.
  mtcnn             face detection for cropping real photos (ships its weights).
  pillow            image decoding / PNG writing for reports and previews.
  scipy             nearest-neighbour search (ICP alignment of scans).
  tensorboard       training summaries, including the mesh plugin (TensorFlow
                    2.21 no longer installs it).
"""
import os

import setuptools
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

SUBPACKAGES = ("model", "renderer", "losses", "data", "training", "evaluation",
               "tools")

# TensorFlow op libraries: (module name, sources).  Each is a TensorFlow-free
# core (*_impl.cc) plus a thin op shim (*_op.cc).
TF_OPS = [
    ("unsup3dmm.renderer._rasterize_triangles_op", [
        "renderer/kernels/rasterize_triangles_impl.cc",
        "renderer/kernels/rasterize_triangles_op.cc",
    ]),
    ("unsup3dmm.renderer._shading_kernels_op", [
        "renderer/kernels/shading_kernels_impl.cc",
        "renderer/kernels/shading_kernels_op.cc",
    ]),
]


class BuildPyWithoutSetup(build_py):
  """The root package is the repository root; do not ship setup.py in it."""

  def find_package_modules(self, package, package_dir):
    modules = super().find_package_modules(package, package_dir)
    return [m for m in modules
            if not (package == "unsup3dmm" and m[1] == "setup")]


class BuildTensorFlowOp(build_ext):
  """Compiles TensorFlow custom ops with the installed TensorFlow's flags."""

  def build_extensions(self):
    try:
      import tensorflow as tf  # pylint: disable=import-outside-toplevel
    except ImportError as e:
      raise RuntimeError(
          "Building the rasteriser op needs TensorFlow installed in the build "
          "environment. Install it first and build without isolation:\n"
          "  pip install 'tensorflow>=2.16' && "
          "pip install --no-build-isolation -e .") from e
    compile_flags = tf.sysconfig.get_compile_flags()
    link_flags = tf.sysconfig.get_link_flags()
    for ext in self.extensions:
      # -ffp-contract=off: no fused multiply-add, so the op's float32
      # arithmetic matches the pure TensorFlow backend bit for bit.
      ext.extra_compile_args = (list(ext.extra_compile_args) + compile_flags +
                                ["-O3", "-fPIC", "-ffp-contract=off",
                                 "-Wno-sign-compare"])
      ext.extra_link_args = list(ext.extra_link_args) + link_flags
      ext.language = "c++"
    # The compiler driver setuptools picks for .cc files is fine; make sure
    # -std=c++17 from TensorFlow wins over any older default.
    super().build_extensions()

  def get_export_symbols(self, ext):
    # A TensorFlow op library is not a Python extension: no PyInit_ symbol.
    return []


setuptools.setup(
    name="unsup3dmm",
    version="0.1.0",
    description=("Unsupervised training for 3D morphable model regression "
                 "(Genova et al., CVPR 2018) in TensorFlow/Keras"),
    python_requires=">=3.10",
    packages=["unsup3dmm"] + ["unsup3dmm." + p for p in SUBPACKAGES],
    package_dir={"unsup3dmm": ".",
                 **{"unsup3dmm." + p: p for p in SUBPACKAGES}},
    ext_modules=[
        setuptools.Extension(name, sources=sources,
                             include_dirs=[os.path.join("renderer", "kernels")])
        for name, sources in TF_OPS
    ],
    package_data={"unsup3dmm.data": ["five_celebrities.tsv"]},
    cmdclass={"build_ext": BuildTensorFlowOp, "build_py": BuildPyWithoutSetup},
    install_requires=[
        "tensorflow>=2.16",
        "keras>=3",
        "keras-facenet>=0.3.2",
        "opencv-python-headless",
        "numpy",
        "h5py",
        "absl-py",
        "mtcnn>=1.0",
        "pillow",
        "scipy",
        "tensorboard",
    ],
    extras_require={"test": ["pytest>=7"]},
    entry_points={
        "console_scripts": [
            "unsup3dmm-convert=unsup3dmm.tools.convert_model:run",
            "unsup3dmm-train=unsup3dmm.train:run",
            "unsup3dmm-evaluate=unsup3dmm.evaluate:run",
        ]
    },
)
