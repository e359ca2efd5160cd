"""unsup3dmm: unsupervised training for 3D morphable model regression.

A TensorFlow/Keras implementation of Genova et al., "Unsupervised Training for 3D
Morphable Model Regression", CVPR 2018.

The repository root is the ``unsup3dmm`` package (see ``setup.py``): import the
sub-packages as ``unsup3dmm.model``, ``unsup3dmm.renderer``, ``unsup3dmm.losses``,
``unsup3dmm.data``, ``unsup3dmm.training`` and ``unsup3dmm.evaluation``.
"""

__version__ = "0.1.0"
