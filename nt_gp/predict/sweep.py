"""`gp_inference_sweep`: `gp_inference` for a list of `diag_reg` values, with
kernels given as arrays or `KernelStore` files, in a memory budget."""
import collections
import numbers

import numpy as np

__all__ = ['gp_inference_sweep', 'SweepPosterior']

SweepPosterior = collections.namedtuple(
    'SweepPosterior', ['mean', 'variance', 'log_marginal_likelihood',
                       'diag_reg'])
SweepPosterior.__doc__ = """Posterior of a `gp_inference_sweep` call.

Fields (with a leading axis over the `diag_reg` values when a list was
given; numpy float64 arrays):
  mean: ``(T, C)`` posterior means (None without `k_test_train`).
  variance: ``(T,)`` posterior variances (None without `k_test_test`).
  log_marginal_likelihood: ``()`` ``log N(y_train | 0, K + reg I)`` summed
    over target columns.
  diag_reg: the `diag_reg` value(s).
"""

_GETS = ('nngp', 'ntk', 'ntkgp')


def gp_inference_sweep(k_train_train, y_train, diag_reg=0.,
                       diag_reg_absolute_scale=False, *, memory_limit=None,
                       work_dir=None, dtype='float64', verify=True,
                       progress=False):
  r"""`gp_inference` for one or many `diag_reg` values, beyond memory.

  Like `nt_gp.predict.gp_inference`, but the kernels may be `KernelStore`
  files (from ``nt-gp kernel`` or `nt_gp.distributed.compute_kernel`) as
  well as arrays, `diag_reg` may be a list (a sweep: each value is factored
  once, or all share one eigendecomposition when cheaper), the log marginal
  likelihood is returned, and memory stays under `memory_limit`: a kernel
  that does not fit is factored out of core, resumably
  (`nt_gp.solve.exact_sweep`). Test covariances are given and returned as
  diagonals (variances).

  Args:
    k_train_train: ``(N, N)`` kernel: array, namedtuple / `Kernel` with
      `nngp` / `ntk`, a `KernelStore` or the path of one.
    y_train: ``(N,)`` or ``(N, C)`` targets.
    diag_reg: a non-negative number or a list of them.
    diag_reg_absolute_scale: as in `gp_inference`.
    memory_limit: bytes or e.g. ``'8G'``, for the whole process.
    work_dir: folder for out-of-core factors and the record of finished
      values; rerun with the same folder to resume an interrupted sweep.
    dtype: ``'float64'`` (default) or ``'float32'`` arithmetic.
    verify: check stores against their blocks' checksums when opening them.
    progress: progress bar with ETA on stderr.

  Returns:
    `predict_fn(get=None, k_test_train=None, k_test_test=None)`:

    * `get`: ``'nngp'``, ``'ntkgp'``, ``'ntk'`` (means only) or a tuple of
      them (a namedtuple is returned); None is ``'nngp'``.
    * `k_test_train`: ``(T, N)`` kernel (array, record, store or path).
    * `k_test_test`: ``(T,)`` diagonal, ``(T, T)`` kernel, store or path of
      the test points' prior variances (NNGP for ``'nngp'``, NTK for
      ``'ntkgp'``), or None.

    Each value is a `SweepPosterior`. Each call solves anew; give all test
    points in one call.

  Example:
    >>> import numpy as np
    >>> from nt_gp import predict
    >>> k_dd = np.array([[2., 1.], [1., 2.]])
    >>> predict_fn = predict.gp_inference_sweep(k_dd, np.array([[1.], [-1.]]),
    ...                                         diag_reg=[0., 1.],
    ...                                         diag_reg_absolute_scale=True)
    >>> out = predict_fn('nngp', np.array([[1., 0.]]), np.array([1.]))
    >>> out.mean.shape, out.variance.round(4).tolist()
    ((2, 1, 1), [[0.3333], [0.625]])
    >>> out.log_marginal_likelihood.shape
    (2,)
  """
  from nt_gp.solve.regularization import check_regs  # pylint: disable=g-import-not-at-top
  check_regs(diag_reg)
  single_reg = isinstance(diag_reg, numbers.Number) or np.ndim(diag_reg) == 0

  def one(get, k_test_train, k_test_test):
    from nt_gp.solve.exact import exact_sweep  # pylint: disable=g-import-not-at-top
    sets = None
    if k_test_train is not None:
      sets = {'test': k_test_train if k_test_test is None else
              (k_test_train, k_test_test)}
    elif k_test_test is not None:
      raise ValueError('`k_test_test` needs `k_test_train`.')
    out = exact_sweep(k_train_train, y_train, diag_reg,
                      diag_reg_absolute_scale, get=get, eval_sets=sets,
                      memory_limit=memory_limit, work_dir=work_dir,
                      dtype=dtype, verify=verify, progress=progress)
    mean = out.mean.get('test')
    variance = out.variance.get('test')
    lml = out.log_marginal_likelihood
    regs = out.diag_reg
    if single_reg:
      mean = None if mean is None else mean[0]
      variance = None if variance is None else variance[0]
      lml, regs = lml[0], regs[0]
    return SweepPosterior(mean, variance, lml, regs)

  def predict_fn(get=None, k_test_train=None, k_test_test=None):
    """Posteriors for the test points; see `gp_inference_sweep`."""
    names = ('nngp',) if get is None else (get,) if isinstance(get, str) \
        else tuple(get)
    for g in names:
      if g not in _GETS:
        raise ValueError(f'`get` must be one of {_GETS} or a tuple of them, '
                         f'got {get!r}.')
    results = {g: one(g, k_test_train, k_test_test) for g in names}
    if get is None or isinstance(get, str):
      return results[names[0]]
    return collections.namedtuple('SweepPosteriors', names)(
        *(results[g] for g in names))

  return predict_fn
