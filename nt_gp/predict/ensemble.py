"""`gradient_descent_mse_ensemble`: infinite ensembles trained on MSE."""
import collections

import numpy as np
import tensorflow as tf

from nt_gp.predict import _eigen
from nt_gp.predict import _utils
from nt_gp.predict.gp import gp_inference
from nt_gp.predict.records import Gaussian

__all__ = ['gradient_descent_mse_ensemble']

_GETS = ('nngp', 'ntk')

# Train-train kernels handed to `gp_inference` (missing entries are None).
_TrainKernels = collections.namedtuple('Kernel', ['nngp', 'ntk'],
                                       defaults=(None, None))


def _dependencies(names, compute_cov):
  """Kernels needed for `names` (the NTK covariance also needs the NNGP)."""
  deps = ()
  if 'nngp' in names or ('ntk' in names and compute_cov):
    deps += ('nngp',)
  if 'ntk' in names:
    deps += ('ntk',)
  return deps


def _is_array_tree(x):
  if isinstance(x, (tuple, list)) and not hasattr(x, '_fields'):
    return len(x) > 0 and all(_is_array_tree(v) for v in x)
  return isinstance(x, (np.ndarray, tf.Tensor, tf.Variable))


def _first_of_pairs(kwargs):
  return {k: v[0] if isinstance(v, tuple) and len(v) == 2 else v
          for k, v in kwargs.items()}


def _merge_kwargs(train_kwargs, test_kwargs):
  """`kernel_fn` keyword arguments for the test-train and test-test kernels.

  Array-valued pairs `(a1, a2)` (e.g. graph patterns) are combined into
  `(test, train)` for the test-train kernel; other values must agree.
  """
  first_train = _first_of_pairs(train_kwargs)
  first_test = _first_of_pairs(test_kwargs)
  kwargs_td, kwargs_tt = dict(train_kwargs), dict(train_kwargs)
  for k, v_tt in test_kwargs.items():
    v_dd = train_kwargs.get(k)
    if _is_array_tree(v_dd) and _is_array_tree(v_tt):
      if (isinstance(v_dd, tuple) and len(v_dd) == 2 and
          isinstance(v_tt, tuple) and len(v_tt) == 2):
        v_td = (first_test[k], first_train[k])
      else:
        v_td = v_tt
    elif _is_array_tree(v_dd) or _is_array_tree(v_tt) or v_dd != v_tt:
      raise ValueError(f'Keyword argument `{k}` of `kernel_fn` is set to '
                       f'different values for the train-train ({v_dd!r}) and '
                       f'the test kernels ({v_tt!r}).')
    else:
      v_td = v_tt
    kwargs_td[k] = v_td
    kwargs_tt[k] = v_tt
  return kwargs_td, kwargs_tt


def _vdv(evecs, diag):
  """`V diag(d_t) V^T` for `diag (T, n)` -> `(T, n, n)`."""
  return tf.einsum('ij,tj,kj->tik', evecs, diag, evecs)


def gradient_descent_mse_ensemble(kernel_fn, x_train, y_train,
                                  learning_rate=1., diag_reg=0.0,
                                  diag_reg_absolute_scale=False,
                                  trace_axes=(-1,),
                                  **kernel_fn_train_train_kwargs):
  r"""Mean and covariance of an infinite ensemble trained by gradient flow on MSE.

  With the infinite-width `kernel_fn` of a network, this is the distribution
  of outputs of infinitely many infinitely wide networks (randomly
  initialized) after training time `t`. `'nngp'` gives the corresponding
  Bayesian (NNGP) flow; `'ntk'` gradient descent training of all layers.
  Kernels, eigendecompositions (finite `t`) and Cholesky factors (`t=None`)
  are computed on first use and cached.

  Args:
    kernel_fn: a kernel function `kernel_fn(x1, x2, get, **kwargs)` returning
      a tensor for a string `get` and a namedtuple (or `Kernel`) for a tuple,
      e.g. from `nt_gp.stax`.
    x_train: training inputs `(N_train, ...)` (float32 or float64; outputs
      follow the kernel's dtype).
    y_train: training targets, e.g. `(N_train, K)`.
    learning_rate: non-negative learning rate (time unit).
    diag_reg: non-negative diagonal regularizer of the train-train kernel.
    diag_reg_absolute_scale: False: `diag_reg` is relative to the mean diagonal
      of the train-train kernel; True: absolute.
    trace_axes: axes of `y_train` that the kernels lack.
    **kernel_fn_train_train_kwargs: keyword arguments of `kernel_fn` for the
      train-train kernel (also used for test kernels unless overridden in
      `predict_fn`; pairs of arrays are split between test and train).

  Returns:
    `predict_fn(t=None, x_test=None, get=None, compute_cov=False,
    **kernel_fn_test_test_kwargs)`:

    * `t`: a scalar or array of times (leading output axes); None: infinite.
    * `x_test`: test inputs `(N_test, ...)`; None: predictions on `x_train`
      (without the regularizer in the kernel used to predict).
    * `get`: `'nngp'`, `'ntk'`, a tuple (namedtuple `Gaussians` returned), or
      None for `('nngp', 'ntk')`.
    * `compute_cov`: also return covariances (`Gaussian(mean, covariance)`),
      mean `(*t.shape, N_test, K)` and covariance `(*t.shape, N_test, N_test)`.

  Example:
    >>> import numpy as np
    >>> from nt_gp import predict, stax
    >>> _, _, kernel_fn = stax.serial(stax.Dense(8), stax.Relu(), stax.Dense(1))
    >>> rng = np.random.RandomState(0)
    >>> x_train, y_train = rng.randn(4, 3), rng.randn(4, 1)
    >>> predict_fn = predict.gradient_descent_mse_ensemble(
    ...     kernel_fn, x_train, y_train, diag_reg=1e-4)
    >>> out = predict_fn(t=[1., 10.], x_test=rng.randn(2, 3), get='ntk',
    ...                  compute_cov=True)
    >>> tuple(out.mean.shape), tuple(out.covariance.shape)
    ((2, 2, 1), (2, 2, 2))
  """
  if not callable(kernel_fn):
    raise TypeError(f'`kernel_fn` must be callable, got '
                    f'{type(kernel_fn).__name__}.')
  _utils.check_scalar(learning_rate, 'learning_rate')
  _utils.check_scalar(diag_reg, 'diag_reg')
  y_in = _utils.to_tensor(y_train, 'y_train')
  layout = _utils.Layout.of(y_in.shape, trace_axes)
  train_shape = layout.nontrace_shape
  size = float(np.prod(tuple(y_in.shape)))
  train_kwargs = dict(kernel_fn_train_train_kwargs)

  k_dd_cache = {}
  bases = {}
  inf_fns = {}
  y_cache = {}

  def call(what, *args, **kwargs):
    """`kernel_fn(*args, **kwargs)`; a ValueError or TypeError from it
    (about `x1`, `x2`: its own arguments) says which call it was."""
    try:
      return kernel_fn(*args, **kwargs)
    except (ValueError, TypeError) as e:
      if type(e) not in (ValueError, TypeError):
        raise
      raise type(e)(f'{what}: {e}') from e

  def as_kernel(value, name):
    k = _utils.to_tensor(value, name)
    if k_dd_cache and k.dtype != next(iter(k_dd_cache.values())).dtype:
      raise TypeError(f'`kernel_fn` returned {name} of dtype {k.dtype.name} '
                      f'unlike earlier kernels.')
    return k

  def store_train(g, value):
    k = as_kernel(value, f'train-train "{g}"')
    _utils.check_kernel(k, f'kernel_fn(x_train, None, {g!r})', train_shape,
                        train_shape)
    _utils.check_symmetric(_utils.make_2d(k), f'train-train "{g}" kernel')
    k_dd_cache[g] = k

  def train_kernels(deps):
    missing = tuple(g for g in deps if g not in k_dd_cache)
    if len(missing) == 2:
      out = call('kernel_fn(x_train, None, get)', x_train, None, missing,
                 **train_kwargs)
      for g in missing:
        store_train(g, _field(out, g, 'kernel_fn(x_train, None, get)'))
    else:
      for g in missing:
        store_train(g, call(f'kernel_fn(x_train, None, {g!r})', x_train,
                            None, g, **train_kwargs))
    return _TrainKernels(**k_dd_cache)

  def y_of(dtype):
    if dtype not in y_cache:
      y = _utils.to_tensor(y_train, 'y_train', dtype)
      y_cache[dtype] = _utils.check_finite(y, 'y_train')
    return y_cache[dtype]

  def basis(g):
    if g not in bases:
      bases[g] = _eigen.EigenBasis(_utils.make_2d(k_dd_cache[g]), diag_reg,
                                   diag_reg_absolute_scale)
    return bases[g]

  def predict_inf(names, k_dd):
    if names not in inf_fns:
      inf_fns[names] = gp_inference(k_dd, y_of(k_dd_cache[names[0]].dtype),
                                    diag_reg, diag_reg_absolute_scale,
                                    trace_axes)
    return inf_fns[names]

  def test_kernels(deps, x_test, compute_cov, test_kwargs):
    if x_test is None:
      return None, (compute_cov or None)
    kwargs_td, kwargs_tt = _merge_kwargs(train_kwargs, test_kwargs)
    out = call('kernel_fn(x_test, x_train, get)', x_test, x_train, deps,
               **kwargs_td)
    k_td = {}
    for g in deps:
      k = as_kernel(_field(out, g, 'kernel_fn(x_test, x_train, get)'),
                    f'test-train "{g}"')
      _utils.check_kernel(k, f'kernel_fn(x_test, x_train, {g!r})',
                          cols=train_shape)
      k_td[g] = k
    nngp_tt = None
    if compute_cov:
      nngp_tt = as_kernel(call("kernel_fn(x_test, None, 'nngp')", x_test,
                               None, 'nngp', **kwargs_tt),
                          'test-test "nngp"')
      rows = _utils.kernel_sides(k_td[deps[0]])[0]
      _utils.check_kernel(nngp_tt, "kernel_fn(x_test, None, 'nngp')", rows,
                          square=True)
    return _TrainKernels(**k_td), nngp_tt

  def predict_fn(t=None, x_test=None, get=None, compute_cov=False,
                 **kernel_fn_test_test_kwargs):
    """Test-set mean [and covariance] at time[s] `t`."""
    single, names = _utils.canonicalize_get(get, _GETS, _GETS)
    if not isinstance(compute_cov, (bool, np.bool_)):
      raise TypeError(f'`compute_cov` must be a bool, got {compute_cov!r}.')
    deps = _dependencies(names, compute_cov)
    k_dd = train_kernels(deps)
    k_td, nngp_tt = test_kernels(deps, x_test, compute_cov,
                                 kernel_fn_test_test_kwargs)

    if t is None:
      res = predict_inf(names, k_dd)(names, k_td, nngp_tt)
      return _utils.format_get(dict(zip(names, res)), single, names)

    dtype = k_dd_cache[deps[0]].dtype
    y2d = layout.flatten(y_of(dtype))
    t = _utils.as_times(t, dtype) * _utils.scalar_as(learning_rate, dtype)
    t_shape = tuple(t.shape)
    t = tf.reshape(t, (-1, 1))
    if k_td is None:
      rows = train_shape
    else:
      rows = _utils.kernel_sides(getattr(k_td, deps[0]))[0]

    out = {}
    for g in names:
      evals, evecs = basis(g).eigh()
      if k_td is None:
        mean = basis(g).apply(-_eigen.expm1(evals, t, size), y2d)
      else:
        neg_inv_expm1 = -_eigen.inv_expm1(evals, t, size)
        ktd_g = _utils.make_2d(getattr(k_td, g))
        mean = tf.einsum('ij,tjm->tim', ktd_g,
                         basis(g).apply(neg_inv_expm1, y2d))
      mean = layout.unflatten(mean, t_shape, rows)

      if nngp_tt is None:
        out[g] = mean
        continue

      nngp_dd = _utils.make_2d(k_dd.nngp)
      evals_pos = tf.maximum(evals, 0.)
      if k_td is None:
        if g == 'nngp':
          cov = _vdv(evecs, evals_pos * tf.exp(-2. * evals_pos * t / size))
        else:
          flow = _vdv(evecs, tf.exp(-evals_pos * t / size))
          cov = tf.einsum('tmk,kl,tnl->tmn', flow, nngp_dd, flow)
      else:
        nngp_tt_2d = _utils.make_2d(nngp_tt)[tf.newaxis]
        if g == 'nngp':
          a = tf.matmul(ktd_g, evecs)
          cov = nngp_tt_2d - tf.einsum(
              'mi,ti,li->tml', a, -_eigen.inv_expm1(evals, 2. * t, size), a)
        else:
          ktd_nngp = _utils.make_2d(k_td.nngp)
          inv_flow = _vdv(evecs, neg_inv_expm1)  # (T, n_train, n_train)
          term_1 = tf.einsum('tmk,lk->tml', inv_flow, ktd_g)
          term_2 = tf.einsum('mj,tjk,lk->tml', ktd_g, inv_flow, ktd_nngp)
          term_2 = term_2 + tf.transpose(term_2, (0, 2, 1))
          cov = tf.einsum('tji,jk,tkl->til', term_1, nngp_dd, term_1)
          cov = cov - term_2 + nngp_tt_2d
      out[g] = Gaussian(mean, _utils.zip_2d(cov, t_shape, rows))

    return _utils.format_get(out, single, names)

  return predict_fn


def _field(out, g, name):
  value = getattr(out, g, None)
  if value is None:
    raise ValueError(f'{name} returned no "{g}" (got {type(out).__name__}).')
  return value

