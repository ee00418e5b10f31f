"""`gp_inference`: NNGP / NTK / NTKGP posteriors (infinite training time)."""
import tensorflow as tf

from nt_gp.predict import _utils
from nt_gp.predict.records import Gaussian

__all__ = ['gp_inference']

_GETS = ('nngp', 'ntk', 'ntkgp')


def kernel_attr(k, g: str, name: str):
  """The `g` kernel of `k` (an array, a namedtuple or a `Kernel`), as given."""
  if _utils.is_array(k):
    return k
  value = getattr(k, g, None)
  if value is None:
    raise ValueError(f'`{name}` has no "{g}" kernel; pass an array, or a '
                     f'namedtuple / Kernel containing "{g}".')
  return value


def has_attr(k, g: str) -> bool:
  return not _utils.is_array(k) and getattr(k, g, None) is not None


class CholeskySolver:
  """Cached `(k + reg)^{-1} b` for a flattened train-train kernel."""

  def __init__(self, k2d, diag_reg, diag_reg_absolute_scale, name):
    self.k2d = k2d
    self.diag_reg = diag_reg
    self.absolute = diag_reg_absolute_scale
    self.name = name
    self._cache = _utils.GraphCache()

  def cached(self, key, compute):
    return self._cache.get(key, compute)

  def factor(self):
    def compute():
      reg = _utils.add_diagonal_regularizer(self.k2d, self.diag_reg,
                                            self.absolute)
      return _utils.cholesky(reg, self.name)
    return self.cached('chol', compute)

  def solve(self, b2d):
    return tf.linalg.cholesky_solve(self.factor(), b2d)


def gp_inference(k_train_train, y_train, diag_reg=0.,
                 diag_reg_absolute_scale=False, trace_axes=(-1,)):
  r"""Posterior of the NNGP, NTK or NTKGP given the training data.

  * ``'nngp'``: the exact posterior of an infinitely wide Bayesian network.
  * ``'ntk'``: the distribution of an infinite ensemble of infinitely wide
    networks trained on MSE by gradient flow for infinite time.
  * ``'ntkgp'``: the posterior of a GP whose prior covariance is the NTK.

  Cholesky factors of the regularized train-train kernels are computed on the
  first call of the returned function and reused.

  Args:
    k_train_train: train-train kernel: a tensor / numpy array of shape
      `(N_train, N_train)` (zipped `(N, N, X, X, ...)` when the targets have
      more non-trace axes), or a namedtuple / `nt_gp.Kernel` with `nngp`
      and/or `ntk` fields. The NTK test covariance needs both.
    y_train: targets, e.g. `(N_train, K)`; `k_train_train` must have the shape
      of `y_train` without `trace_axes`, zipped with itself.
    diag_reg: non-negative diagonal regularizer: the solves use
      `k_train_train + diag_reg * I`.
    diag_reg_absolute_scale: if False (default), `diag_reg` is relative to the
      mean of the diagonal of `k_train_train`; if True it is absolute.
    trace_axes: axes of `y_train` absent from the kernels; the kernel acts as
      `K ⊗ I` along them.

  Returns:
    `predict_fn(get=None, k_test_train=None, k_test_test=None)`:

    * `get`: `'nngp'`, `'ntk'`, `'ntkgp'`, a tuple of them (a namedtuple
      `Gaussians` is returned), or None for `('nngp', 'ntk')`.
    * `k_test_train`: test-train kernel, shape `(N_test, N_train)` (or a
      namedtuple / `Kernel`); None predicts on the training set
      (`N(y_train, 0)`).
    * `k_test_test`: test-test kernel `(N_test, N_test)` (NNGP for 'nngp' and
      'ntk', NTK for 'ntkgp'), or None to return only means. With
      `k_test_train=None` pass any non-None value (e.g. True) to get the
      (zero) train covariance.

    Each value is the mean (shape `(N_test, K)`) or a `Gaussian(mean,
    covariance)` with covariance of shape `(N_test, N_test)`; dtype of the
    kernels.

  Example:
    >>> import numpy as np
    >>> from nt_gp import predict
    >>> k_dd = np.array([[2., 1.], [1., 2.]])
    >>> y = np.array([[1.], [-1.]])
    >>> predict_fn = predict.gp_inference(k_dd, y, diag_reg=0.)
    >>> out = predict_fn('nngp', np.array([[1., 0.]]), np.array([[1.]]))
    >>> np.round(out.mean.numpy(), 4), np.round(out.covariance.numpy(), 4)
    (array([[1.]]), array([[0.3333]]))
  """
  _utils.check_scalar(diag_reg, 'diag_reg')
  first = None
  for g in ('nngp', 'ntk'):
    if _utils.is_array(k_train_train) or has_attr(k_train_train, g):
      first = kernel_attr(k_train_train, g, 'k_train_train')
      break
  if first is None:
    raise ValueError('`k_train_train` must be an array or contain "nngp" or '
                     '"ntk".')
  dtype = _utils.to_tensor(first, 'k_train_train').dtype
  y = _utils.check_finite(_utils.to_tensor(y_train, 'y_train', dtype),
                          'y_train')
  layout = _utils.Layout.of(y.shape, trace_axes)
  y2d = layout.flatten(y)
  train_shape = layout.nontrace_shape

  k_dd_cache = {}

  def k_dd(g):
    """Validated 2D train-train kernel `g`."""
    if g not in k_dd_cache:
      k = _utils.to_tensor(kernel_attr(k_train_train, g, 'k_train_train'),
                           'k_train_train', dtype)
      _utils.check_kernel(k, 'k_train_train', train_shape, train_shape)
      k2d = _utils.make_2d(k)
      _utils.check_symmetric(k2d, 'k_train_train')
      k_dd_cache[g] = (k, k2d)
    return k_dd_cache[g]

  # Validate now what was given (factorizations stay lazy).
  for g in ('nngp', 'ntk'):
    if _utils.is_array(k_train_train):
      k_dd_cache['ntk'] = k_dd_cache['nngp'] = k_dd('nngp')
      break
    if has_attr(k_train_train, g):
      k_dd(g)

  solvers = {}

  def solver(g) -> CholeskySolver:
    if _utils.is_array(k_train_train):
      g = 'nngp'  # one matrix serves every `get`
    if g not in solvers:
      solvers[g] = CholeskySolver(k_dd(g)[1], diag_reg,
                                  diag_reg_absolute_scale,
                                  f'k_train_train ({g})')
    return solvers[g]

  def k_inv_y(g):
    s = solver(g)
    return s.cached('inv_y', lambda: s.solve(y2d))

  def test_kernel(k, g, name, test_shape=None):
    t = _utils.to_tensor(kernel_attr(k, g, name), name, dtype)
    if test_shape is None:  # test-train
      return _utils.check_kernel(t, name, cols=train_shape)
    return _utils.check_kernel(t, name, rows=test_shape, square=True)

  def predict_fn(get=None, k_test_train=None, k_test_test=None):
    """Posterior on the test set; see `gp_inference`."""
    single, names = _utils.canonicalize_get(get, _GETS, ('nngp', 'ntk'))
    out = {}
    for g in names:
      k = 'ntk' if g == 'ntkgp' else g
      k_dd_full = k_dd(k)[0]

      if k_test_train is None:
        mean = y
        k_td = None
      else:
        k_td = test_kernel(k_test_train, k, 'k_test_train')
        test_shape = _utils.kernel_sides(k_td)[0]
        k_td_2d = _utils.make_2d(k_td)
        mean = layout.unflatten(tf.matmul(k_td_2d, k_inv_y(k)), (), test_shape)

      if k_test_test is None:
        out[g] = mean
        continue

      if k_td is None:
        out[g] = Gaussian(mean, tf.zeros_like(k_dd_full))
        continue

      if g == 'ntk' and not (has_attr(k_train_train, 'nngp') and
                             has_attr(k_test_train, 'nngp')):
        raise ValueError(
            'The NTK posterior covariance on the test set needs both the NTK '
            'and the NNGP train-train and test-train kernels: pass '
            'namedtuples / Kernels with "nngp" and "ntk" fields as '
            '`k_train_train` and `k_test_train`.')

      g_init = 'ntk' if g == 'ntkgp' else 'nngp'
      k_tt = _utils.make_2d(test_kernel(k_test_test, g_init, 'k_test_test',
                                        test_shape))
      k_td_init = _utils.make_2d(
          test_kernel(k_test_train, g_init, 'k_test_train'))
      if tuple(k_td_init.shape) != tuple(k_td_2d.shape):
        raise ValueError('The "nngp" and "ntk" parts of `k_test_train` have '
                         'different shapes.')
      # (k_dd + reg)^{-1} k_dt of the kernel at initialization.
      inv_k_dt_init = solver(k).solve(tf.transpose(k_td_init))
      cross = tf.matmul(k_td_2d, inv_k_dt_init)

      if g in ('nngp', 'ntkgp'):
        cov = k_tt - cross
      else:
        nngp_dd_2d = k_dd('nngp')[1]
        term_1 = solver('ntk').solve(tf.transpose(k_td_2d))
        cov = tf.matmul(term_1, tf.matmul(nngp_dd_2d, term_1),
                        transpose_a=True)
        cov = cov - (cross + tf.transpose(cross)) + k_tt
      out[g] = Gaussian(mean, _utils.zip_2d(cov, (), test_shape))

    return _utils.format_get(out, single, names)

  return predict_fn
