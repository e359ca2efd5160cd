"""Loss weights (Genova et al., CVPR 2018, Sec. 3-4)."""
import dataclasses


@dataclasses.dataclass
class LossConfig:
  """Weights of the loss terms; all dimensionless."""
  # Parameter loss on synthetic faces, lambda_s ||s - s_hat||^2 (paper
  # Sec. 4.1); also the shape weight inside the loopback loss.
  shape_parameter_weight: float = 0.4
  # Parameter loss on synthetic faces, lambda_t ||t - t_hat||^2 (paper
  # Sec. 4.1); also the texture weight inside the loopback loss.
  texture_parameter_weight: float = 0.002
  # Multi-view identity loss, 1 - cos(embeddings) (paper Sec. 3.2).
  identity_weight: float = 1.0
  # Number of random views rendered per real photo for the identity loss.
  identity_views: int = 3
  # Batch-distribution loss: mean 0 / variance 1 per coefficient (Sec. 3.3).
  batch_distribution_weight: float = 10.0
  # Loopback loss weight (Sec. 3.4).
  loopback_weight: float = 0.07
  # L2 weight regularisation of the decoder, towards zero: multiplies the sum
  # of squared decoder kernel weights (CoefficientDecoder.weight_penalty).
  decoder_l2_weight: float = 1e-4
