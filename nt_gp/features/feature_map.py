"""`features_fn`: explicit feature maps of a network's NNGP and NTK.

For a `stax` network, `features_fn(layer, feature_dim)` returns a
`FeatureMap` `phi` with ``phi(x) -> (nngp_feat, ntk_feat)`` such that
``nngp_feat(x1) @ nngp_feat(x2).T`` estimates
``kernel_fn(x1, x2, 'nngp')`` (and likewise for the NTK), unbiasedly for
networks with one random layer and with an `O(1/feature_dim)` bias beyond.
The map is read from the same layer objects as `kernel_fn` (through
`nt_gp.stax.describe`), built layer by layer from each layer's exact kernel
rule (see the modules of `nt_gp.features`), seeded, and compiled.

Compiled as a graph-mode `tf.function`, not with XLA: measured here
(float32, interleaved runs), XLA took 6-7 s against 0.9-1.9 s for Hermite
features of 2000 points (the Hadamard transforms' transposes and gathers),
and was within noise of graph mode for ReLU MLP and CNN features (matmuls
and convolutions dominate).
"""
import collections
import functools
from typing import Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from nt_gp.features import activations, branching, linear, pooling  # pylint: disable=unused-import  (registers the rules)
from nt_gp.features.build import Context, Spec, UnsupportedLayer, build
from nt_gp.features.random import RandomMatrices
from nt_gp import validation
from nt_gp.validation import canonicalize_get

__all__ = ['FeatureMap', 'features_fn']

_GETS = ('nngp', 'ntk')
_METHODS = ('auto', 'random', 'hermite')

# Compiled feature functions shared by maps that differ only in their seed
# (the random matrices are arguments, the rest of a built map depends only
# on the network, the options and the input shape). Values keep their
# `LayerCall` alive so that its id is not reused.
_COMPILED = collections.OrderedDict()
_COMPILED_MAX = 64


def _positive_int(name, value):
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise TypeError(f'`{name}` must be a positive int, got {value!r}.')
  if value < 1:
    raise ValueError(f'`{name}` must be >= 1, got {value}.')
  return int(value)


class FeatureMap:
  """Random features of a network's NNGP and NTK; see `features_fn`.

  Attributes:
    input_shape: the non-batch input shape the map was built for (None until
      the first call when not given).
    nngp_dim, ntk_dim: feature dimensions (after the map is built).
  """

  def __init__(self, layer, feature_dim, sketch_dim: Optional[int],
               seed: int, activation_method: str, hermite_degree: int,
               quadrature_nodes: Optional[int], hermite_tolerance: float,
               input_shape):
    from nt_gp import stax  # pylint: disable=g-import-not-at-top
    self.call = stax.describe(layer)
    if isinstance(feature_dim, (list, tuple)):
      if not feature_dim:
        raise ValueError('`feature_dim` must not be an empty sequence.')
      self.feature_dim = tuple(_positive_int('feature_dim', d)
                               for d in feature_dim)
    else:
      self.feature_dim = _positive_int('feature_dim', feature_dim)
    dims = (self.feature_dim if isinstance(self.feature_dim, tuple) else
            (self.feature_dim,))
    self.sketch_dim = (dims[-1] if sketch_dim is None else
                       _positive_int('sketch_dim', sketch_dim))
    self._dims = dims
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or (
        seed < 0):
      raise TypeError(f'`seed` must be a non-negative int, got {seed!r}.')
    self.seed = int(seed)
    if activation_method not in _METHODS:
      raise ValueError(f'`activation_method` must be one of {_METHODS}, got '
                       f'{activation_method!r}.')
    self.activation_method = activation_method
    self.hermite_degree = int(hermite_degree)
    if self.hermite_degree < 0:
      raise ValueError(f'`hermite_degree` must be >= 0, got {hermite_degree}.')
    if quadrature_nodes is None:
      quadrature_nodes = max(128, 2 * self.hermite_degree + 32)
    self.quadrature_nodes = _positive_int('quadrature_nodes',
                                          quadrature_nodes)
    self.hermite_tolerance = float(hermite_tolerance)
    if not 0 < self.hermite_tolerance < 1:
      raise ValueError(f'`hermite_tolerance` must be in (0, 1), got '
                       f'{hermite_tolerance!r}.')
    self.input_shape = None
    self._built = None
    self._params = {}
    if input_shape is not None:
      self.build(input_shape)

  # --------------------------------------------------------------------------
  def build(self, input_shape: Sequence[int]):
    """Draws the random matrices for inputs of non-batch shape `input_shape`.

    Example:
      >>> from nt_gp import stax, features
      >>> phi = features.features_fn(stax.serial(stax.Dense(1), stax.Relu()),
      ...                            feature_dim=16)
      >>> phi.build((3,)).nngp_dim
      16
    """
    input_shape = tuple(int(d) for d in input_shape)
    if self.input_shape is not None:
      if input_shape != self.input_shape:
        raise ValueError(
            f'This feature map was built for inputs of shape (N, '
            f'{", ".join(map(str, self.input_shape))}), got (N, '
            f'{", ".join(map(str, input_shape))}). Make a new map with '
            f'features_fn for other inputs.')
      return self
    if not input_shape or any(d < 1 for d in input_shape):
      raise ValueError(f'Inputs must have a batch axis and a non-empty '
                       f'channel axis, got non-batch shape {input_shape}.')
    ctx = Context(rng=RandomMatrices(self.seed), feature_dims=self._dims,
                  sketch_dim=self.sketch_dim,
                  activation_method=self.activation_method,
                  hermite_degree=self.hermite_degree,
                  quadrature_nodes=self.quadrature_nodes,
                  hermite_tolerance=self.hermite_tolerance)
    spec = Spec((-1,) + input_shape, input_shape[-1], 0)
    built = build(self.call, spec, ctx)
    if isinstance(built.out, (list, tuple)):
      raise ValueError('The network ends in several branches; end it with a '
                       'fan-in layer (FanInSum, FanInConcat) to get features.')
    self._built = built
    self.input_shape = input_shape
    return self

  @property
  def nngp_dim(self) -> int:
    self._require_built()
    return self._built.out.nngp_dim

  @property
  def ntk_dim(self) -> int:
    self._require_built()
    return self._built.out.ntk_dim

  def _require_built(self):
    if self._built is None:
      raise ValueError('The feature map is built by its first call; call it '
                       'or its `build(input_shape)` first.')

  # --------------------------------------------------------------------------
  def _params_for(self, dtype):
    if dtype not in self._params:
      self._params[dtype] = tf.nest.map_structure(
          lambda a: None if a is None else tf.constant(
              a, tf.int32 if a.dtype.kind == 'i' else dtype),
          self._built.params)
    return self._params[dtype]

  def __call__(self, x, get=None, batch_size: Optional[int] = None):
    """Features of the inputs `x`.

    Args:
      x: `(N, *input_shape)` array (numpy or TensorFlow), channels last;
        float32 or float64 (the features have the same dtype; integers are
        read as float32).
      get: None or `('nngp', 'ntk')` for both, `'nngp'` or `'ntk'` for one.
      batch_size: compute the features of this many inputs at a time (the
        intermediate tensors of a convolution hold `|filter|` times the
        features of every position: batch large image sets).

    Returns:
      `(nngp_feat, ntk_feat)`, tensors of shape `(N, ..., nngp_dim)` and
      `(N, ..., ntk_dim)` (spatial axes kept when the network's output has
      them), or one of them when `get` names one.
    """
    single, names = canonicalize_get(get, _GETS, _GETS)
    x = self._to_tensor(x)
    self.build(tuple(x.shape[1:]))
    compute_ntk = 'ntk' in names
    fn = self._compiled_fn(x.dtype, compute_ntk)
    params = self._params_for(x.dtype)
    if batch_size is None or batch_size >= x.shape[0]:
      phi, psi = fn(x, params)
    else:
      if isinstance(batch_size, bool) or not isinstance(
          batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f'`batch_size` must be a positive int, got '
                         f'{batch_size!r}.')
      parts = [fn(x[i:i + batch_size], params)
               for i in range(0, x.shape[0], batch_size)]
      phi = tf.concat([p[0] for p in parts], 0)
      psi = None if parts[0][1] is None else tf.concat(
          [p[1] for p in parts], 0)
    out = {'nngp': phi, 'ntk': psi}
    values = tuple(out[n] for n in names)
    return values[0] if single else values

  def _compiled_fn(self, dtype, compute_ntk):
    key = (id(self.call), self.feature_dim, self.sketch_dim,
           self.activation_method, self.hermite_degree, self.quadrature_nodes,
           self.hermite_tolerance, self.input_shape, dtype, compute_ntk)
    if key in _COMPILED:
      _COMPILED.move_to_end(key)
    else:
      fn = tf.function(functools.partial(_run, self._built.apply,
                                         compute_ntk=compute_ntk),
                       autograph=False, reduce_retracing=True)
      _COMPILED[key] = (fn, self.call)
      if len(_COMPILED) > _COMPILED_MAX:
        _COMPILED.popitem(last=False)
    return _COMPILED[key][0]

  @staticmethod
  def _to_tensor(x):
    if not isinstance(x, (tf.Tensor, tf.Variable, np.ndarray, list, tuple)):
      raise TypeError(f'`x` must be an array (numpy or TensorFlow), got '
                      f'{type(x).__name__}.')
    t = tf.convert_to_tensor(x)
    if not t.dtype.is_floating:
      if t.dtype.is_complex or t.dtype == tf.string:
        raise TypeError(f'`x` must be real-valued, got dtype {t.dtype.name}.')
      t = tf.cast(t, tf.float32)
    validation.check_kernel_dtype('x', t.dtype)
    if t.shape.rank is None or t.shape.rank < 2:
      raise ValueError(f'`x` must have a batch axis and a channel axis (rank '
                       f'>= 2), got shape {tuple(t.shape)}.')
    if t.shape[0] == 0:
      raise ValueError('`x` has an empty batch.')
    if tf.executing_eagerly() and not bool(
        tf.reduce_all(tf.math.is_finite(t))):
      raise ValueError('`x` has NaN or inf values; features of non-finite '
                       'inputs are undefined.')
    return t

  def __repr__(self):
    dims = ('' if self._built is None else
            f', nngp_dim={self.nngp_dim}, ntk_dim={self.ntk_dim}')
    return (f'FeatureMap({self.call.name}, feature_dim={self.feature_dim}, '
            f'sketch_dim={self.sketch_dim}, seed={self.seed}{dims})')


def _run(apply, x, params, compute_ntk):
  """Input features (``x / sqrt(C)``, a zero NTK) through a built map."""
  c = x.shape[-1]
  phi = x * tf.cast(1 / np.sqrt(c), x.dtype)
  psi = (tf.zeros(tf.concat([tf.shape(x)[:-1], [0]], 0), x.dtype)
         if compute_ntk else None)
  phi, psi = apply(params, (phi, psi))
  phi = tf.debugging.assert_all_finite(phi, 'NNGP features became NaN or inf.')
  if psi is not None:
    psi = tf.debugging.assert_all_finite(psi, 'NTK features became NaN or inf.')
  return phi, psi


def features_fn(layer, feature_dim: Union[int, Sequence[int]], *,
                sketch_dim: Optional[int] = None,
                seed: int = 0, activation_method: str = 'auto',
                hermite_degree: int = 16,
                quadrature_nodes: Optional[int] = None,
                hermite_tolerance: float = 1e-3,
                input_shape: Optional[Sequence[int]] = None) -> FeatureMap:
  """Feature map of a `stax` network's NNGP and NTK.

  Args:
    layer: `(init_fn, apply_fn, kernel_fn)` of an `nt_gp.stax` network (or its
      `kernel_fn`) made of Dense, Conv, AvgPool, SumPool, GlobalAvgPool,
      GlobalSumPool, Flatten, Identity, the ReLU family (Relu, ABRelu,
      LeakyRelu, Abs), Erf, Sigmoid_like, Gelu, Sin, Cos, Gabor, Exp,
      Gaussian, ElementwiseNumerical, Elementwise, FanOut, FanInSum,
      FanInConcat, serial, parallel and repeat. Other layers raise a
      ValueError naming them.
    feature_dim: width `m` of each random layer's features (random features
      of activations, projections of long convolution patches and flattened
      images); the error falls like `1 / sqrt(m)`. A sequence gives one
      width per nonlinearity in network order (the last entry repeats;
      projections use the entry of the next nonlinearity), e.g.
      `(1024, 1024, 4096)` for cheap hidden layers and 4096 output features.
    sketch_dim: dimension of the sketches of tensor products in the NTK
      features (default: the last `feature_dim`).
    seed: the random matrices are drawn from it (same seed, same map, for
      every batch and both float32 and float64).
    activation_method: `'random'` (random features ``σ(φ G)``, the
      arc-cosine features for the ReLU family; unbiased), `'hermite'`
      (Hermite expansion of the dual kernel with TensorSRHT sketches; biased
      by the truncation, checked against `hermite_tolerance`) or `'auto'`
      (currently `'random'`: as accurate per feature and cheaper in the
      measurements of `benchmarks/features_accuracy.py`).
    hermite_degree: degree after which Hermite expansions are truncated.
    quadrature_nodes: Gauss-Hermite nodes for the Hermite coefficients
      (default `max(128, 2 hermite_degree + 32)`).
    hermite_tolerance: largest share of ``E[σ(u)²]`` (and ``E[σ'(u)²]``)
      the truncated degrees may carry for any input; beyond it the call
      raises `tf.errors.InvalidArgumentError` saying what to change (smooth
      activations at pre-activation variances near 1 need degree ~16,
      tanh-like ones at variance 5 degree ~64).
    input_shape: non-batch input shape to build the map now (otherwise the
      first call builds it; later calls must have the same shape).

  Returns:
    A `FeatureMap`: ``phi(x) -> (nngp_feat, ntk_feat)``, tensors of shape
    `(N, phi.nngp_dim)` and `(N, phi.ntk_dim)` for networks ending in a
    readout, in the dtype of `x`, with
    ``E[nngp_feat(x1) @ nngp_feat(x2).T] ≈ kernel_fn(x1, x2, 'nngp')``.

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax, features
    >>> net = stax.serial(stax.Dense(512, W_std=1.5, b_std=0.1), stax.Relu(),
    ...                   stax.Dense(1, W_std=1.5, b_std=0.1))
    >>> phi = features.features_fn(net, feature_dim=4096, seed=0)
    >>> x = np.random.RandomState(0).randn(5, 3)
    >>> nngp_feat, ntk_feat = phi(x)
    >>> tuple(nngp_feat.shape), tuple(ntk_feat.shape), nngp_feat.dtype.name
    ((5, 4097), (5, 8193), 'float64')
    >>> exact = net[2](x, None, 'nngp').numpy()
    >>> approx = (nngp_feat @ tf.transpose(nngp_feat)).numpy()
    >>> bool(np.linalg.norm(approx - exact) < 0.05 * np.linalg.norm(exact))
    True
  """
  return FeatureMap(layer, feature_dim, sketch_dim, seed, activation_method,
                    hermite_degree, quadrature_nodes, hermite_tolerance,
                    input_shape)
