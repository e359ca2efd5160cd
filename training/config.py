"""Training schedule and data settings."""
import dataclasses


@dataclasses.dataclass
class TrainingConfig:
  """Two-stage schedule (paper Sec. 4): synthetic only, then hybrid batches."""
  stage1_steps: int = 300
  stage2_steps: int = 100
  batch_size: int = 8
  # Share of real photos in a stage-2 batch (the rest are synthetic faces).
  real_fraction: float = 0.5
  learning_rate: float = 1e-4
  seed: int = 0
  # "default", "mirrored" or "multi_worker".
  strategy: str = "default"
  checkpoint_every: int = 100
  # Truncation of sampled synthetic coefficients, in standard deviations
  # (0: no truncation).
  coefficient_truncation: float = 3.0
