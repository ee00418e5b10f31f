"""Arc-cosine terms with gradients that stay finite at |c| = 1.

The (AB)ReLU maps need θ = arccos(c) and s = sqrt(1 - c²). Their derivatives,
-1/s and -c/s, are infinite at |c| = 1 (every diagonal entry), so naive
automatic differentiation of the kernel produces 0 · ∞ = NaN even though the
kernel itself, e.g. J1(c) = s + (π - θ) c with J1'(c) = π - θ, is smooth
there. `acos_and_sqrt` gives both terms with a joint custom gradient,
-(ḡ_θ + c ḡ_s) / s, which is exactly zero for J1 and set to zero where s
underflows (there c ≡ 1 and its derivative with respect to any
hyperparameter is zero).
"""
import numpy as np
import tensorflow as tf

from nt_gp.ops import fast_math
from nt_gp.ops import forward_only

__all__ = ['acos_and_sqrt', 'arc_terms', 'clip_cos', 'safe_rsqrt', 'safe_sqrt',
           'variance_roots']


def clip_cos(c: tf.Tensor) -> tf.Tensor:
  """Clips a cosine to [-1, 1] and snaps values within 16 ulp of ±1 to ±1.

  An input paired with itself has c = 1 exactly, but c is computed as
  q12 / sqrt(q11 q22) from quantities that went through different rounding,
  so it lands a few ulp away; since arccos(1 - δ) ≈ sqrt(2 δ), that rounding
  would become a relative error of ~1e-8 in the NTK's diagonal (float64).
  Snapping changes arccos by at most sqrt(32 ε) for genuinely near-parallel
  inputs, the size of the rounding noise it removes.
  """
  one = tf.cast(1., c.dtype)
  tol = 16 * np.finfo(c.dtype.as_numpy_dtype).eps
  c = tf.where(c >= one - tol, one, c)
  return tf.where(c <= tol - one, -one, c)


def safe_rsqrt(v: tf.Tensor) -> tf.Tensor:
  """1/sqrt(v) for v > 0 and 0 where v <= 0, with a finite gradient."""
  positive = v > 0
  safe = tf.where(positive, v, tf.ones_like(v))
  return tf.where(positive, tf.math.rsqrt(safe), tf.zeros_like(v))


def safe_sqrt(v: tf.Tensor) -> tf.Tensor:
  """sqrt(v) for v > 0 and 0 where v <= 0, with a zero gradient there.

  A variance of exactly zero (an all-zero input without bias) stays zero for
  every hyperparameter value, so its true derivative contribution is zero.
  """
  positive = v > 0
  return tf.where(positive, tf.sqrt(tf.where(positive, v, tf.ones_like(v))),
                  tf.zeros_like(v))


def variance_roots(v: tf.Tensor) -> tuple:
  """`(safe_sqrt(v), safe_rsqrt(v))`: the variance factors `arc_terms` needs.

  Computing them once per variance vector, outside an XLA cluster, keeps
  the cluster to the loops over the covariance: XLA does not duplicate a
  square root into the several loops that read it, so each factor computed
  inside would be a loop (and a compiled kernel) of its own.

  Example:
    >>> [float(t) for t in variance_roots(4.)]
    [2.0, 0.5]
  """
  v = tf.convert_to_tensor(v)
  # TensorFlow's CPU `where` refuses operands of rank above 8 (full spatial
  # covariances of 3-D images): those go through a flat view.
  flat = v if v.shape.rank is not None and v.shape.rank <= 8 else tf.reshape(
      v, [-1])
  zero = tf.constant(0, v.dtype)
  positive = flat > zero
  safe = tf.where(positive, flat, tf.constant(1, v.dtype))
  roots = (tf.where(positive, tf.sqrt(safe), zero),
           tf.where(positive, tf.math.rsqrt(safe), zero))
  if flat is v:
    return roots
  shape = tf.shape(v)
  return tuple(tf.reshape(r, shape) for r in roots)


# In graph mode `tf.custom_gradient` registers a gradient function per trace
# in a global registry, which keeps that trace's graph alive (about 1 MB per
# newly built network). Expressing the same gradient with stop_gradient
# arithmetic avoids that but was measured 20% slower with 30% more peak
# memory on the benchmark workloads (XLA fuses it worse), so it stays.
@forward_only.custom_gradient
def acos_and_sqrt(c):
  """Returns `(arccos(c), sqrt(1 - c²))` for `c` in [-1, 1].

  The gradient, -(ḡ_θ + c ḡ_s) / s, is written in differentiable operations
  of `c` itself, so second and higher derivatives are those of arccos and
  sqrt(1 - c²) wherever |c| < 1. Where s = 0 (|c| = 1) the gradient is set
  to zero, and so are its derivatives: there arccos has no derivative, and
  the kernel maps only reach |c| = 1 for an input paired with itself (or a
  parallel copy), whose cosine is identically one.

  Example:
    >>> import numpy as np
    >>> theta, s = acos_and_sqrt(np.float64(0.))
    >>> round(float(theta), 6), float(s)
    (1.570796, 1.0)
  """
  c = tf.convert_to_tensor(c)
  # The gradient below uses only `c`, never these intermediates, so no tape
  # differentiates them. (`tf.vectorized_map` drops custom gradients: through
  # it, differentiation falls back to these operations, right for |c| < 1
  # and NaN, not a silent zero, at |c| = 1.)
  s = tf.sqrt(tf.maximum(1 - c * c, 0))
  theta = fast_math.acos(c)

  def grad(d_theta, d_s):
    # -(ḡ_θ + c ḡ_s) / s from `c` itself (not the stopped copy), so a tape
    # watching this gradient computation sees how it depends on `c`.
    d_theta = tf.zeros_like(c) if d_theta is None else d_theta
    d_s = tf.zeros_like(c) if d_s is None else d_s
    return -(d_theta + c * d_s) * safe_rsqrt(1 - c * c)
  return (theta, s), grad


def _unbroadcast(grad, like):
  """Sums `grad` over the axes along which `like` was broadcast to it."""
  if grad.shape == like.shape:
    return grad
  _, axes = tf.raw_ops.BroadcastGradientArgs(s0=tf.shape(grad),
                                             s1=tf.shape(like))
  return tf.reshape(tf.reduce_sum(grad, axes), tf.shape(like))


def _arc_parts(q12, q11, q22, r11=None, r22=None):
  """The cosine, angle, sine and variance factors of `arc_terms`."""
  if r11 is None:
    r11, r22 = safe_rsqrt(q11), safe_rsqrt(q22)
  c = clip_cos(q12 * (r11 * r22))
  theta, s = acos_and_sqrt(c)
  return c, theta, s, r11, r22


def arc_terms(q12, q11, q22, roots=None):
  """Returns `(sqrt(q11 q22) J(c), θ)` with c = q12/sqrt(q11 q22), θ = arccos c.

  J(c) = sqrt(1 - c²) - θ c is the arc-cosine term of the (AB)ReLU kernels
  (`nngp' = F sqrt(q11 q22) J(c) + M q12`, `ntk' = ntk (M - F θ)`). The
  arguments broadcast against each other (`q11`, `q22` are usually variance
  vectors with singleton axes). `roots`, if given, is
  `variance_roots(q11) + variance_roots(q22)` computed beforehand (values
  only: derivatives are taken with respect to `q11` and `q22` as if the
  roots were computed here).

  Its gradient is written in closed form: with s = sqrt(1 - c²),
  ∂j/∂q12 = -θ, ∂j/∂q11 = s sqrt(q22) / (2 sqrt(q11)), ∂θ/∂q12 =
  -1/(s sqrt(q11 q22)) and ∂θ/∂q11 = c / (2 s q11) (and the same for q22),
  with 1/s taken as zero where s = 0 (the cosine of an input with itself,
  whose derivatives are zero). Differentiating the forward operations
  instead, through the clipping, the reciprocal square roots and the
  broadcast products, costs several times the map itself. The gradient is
  computed from the arguments in differentiable operations, so second and
  higher derivatives are those of these formulas.

  Example:
    >>> import numpy as np
    >>> j, theta = arc_terms(np.float64(0.), np.float64(4.), np.float64(1.))
    >>> float(j), round(float(theta), 6)
    (2.0, 1.570796)
  """
  q12, q11, q22 = (tf.convert_to_tensor(t) for t in (q12, q11, q22))
  if roots is None:
    roots = variance_roots(q11) + variance_roots(q22)
  if len(roots) != 4:
    raise ValueError('`roots` must be variance_roots(q11) + '
                     f'variance_roots(q22) (4 tensors), got {len(roots)}.')
  return _arc_terms(q12, q11, q22, *roots)


@forward_only.custom_gradient
def _arc_terms(q12, q11, q22, s11, r11, s22, r22):
  """`arc_terms` with the variance roots given (see there)."""
  c, theta, s, _, _ = _arc_parts(q12, q11, q22, r11, r22)
  j = (s11 * s22) * (s - theta * c)

  def grad(d_j, d_theta):
    # From the arguments only (never the given roots), so that derivatives
    # of this gradient are those of the formulas in q12, q11, q22.
    c, theta, s, r11, r22 = _arc_parts(q12, q11, q22)
    d_j = tf.zeros_like(j) if d_j is None else d_j
    d_theta = tf.zeros_like(theta) if d_theta is None else d_theta
    inv_s = safe_rsqrt(1 - c * c)
    t = d_theta * c * inv_s
    d12 = -d_j * theta - d_theta * inv_s * (r11 * r22)
    d11 = 0.5 * r11 * (d_j * s * safe_sqrt(q22) + t * r11)
    d22 = 0.5 * r22 * (d_j * s * safe_sqrt(q11) + t * r22)
    # The roots are functions of q11 and q22, whose whole derivative is in
    # d11 and d22: none flows through the roots themselves.
    return (_unbroadcast(d12, q12), _unbroadcast(d11, q11),
            _unbroadcast(d22, q22), None, None, None, None)
  return (j, theta), grad
