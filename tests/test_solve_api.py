"""`predict.gp_inference_sweep` and `predict.gp_inference_nystrom` agree with
`predict.gp_inference` (itself checked against neural-tangents) on the same
kernels, for arrays, kernel records and stores."""
import numpy as np
import pytest

from nt_gp import predict, stax
from nt_gp.distributed import LocalRunner, compute_kernel


@pytest.fixture(scope='module')
def setup():
  _, _, kernel_fn = stax.serial(stax.Dense(1, 1.3, 0.1), stax.Erf(),
                                stax.Dense(1, 1.3, 0.1))
  rng = np.random.RandomState(3)
  x, xt = rng.randn(60, 4), rng.randn(12, 4)
  y = np.stack([np.sin(x[:, 0]), x[:, 1]], 1)
  k = kernel_fn(x, None, ('nngp', 'ntk'))
  kt = kernel_fn(xt, x, ('nngp', 'ntk'))
  ktt = kernel_fn(xt, None, ('nngp', 'ntk'))
  return dict(kernel_fn=kernel_fn, x=x, xt=xt, y=y, k=k, kt=kt, ktt=ktt)


@pytest.mark.parametrize('get', ['nngp', 'ntkgp'])
def test_sweep_equals_gp_inference(setup, get):
  regs = [1e-4, 1e-2, 1.]
  fn = predict.gp_inference_sweep(setup['k'], setup['y'], regs)
  out = fn(get, setup['kt'], setup['ktt'])
  prior = 'nngp' if get == 'nngp' else 'ntk'
  for i, reg in enumerate(regs):
    ref = predict.gp_inference(setup['k'], setup['y'], diag_reg=reg)(
        get, setup['kt'], setup['ktt'])
    np.testing.assert_allclose(out.mean[i], ref.mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(out.variance[i], np.diag(ref.covariance),
                               rtol=1e-9, atol=1e-12)
  assert out.log_marginal_likelihood.shape == (3,)
  # One value: the shapes of gp_inference, no leading axis.
  single = predict.gp_inference_sweep(getattr(setup['k'], prior),
                                      setup['y'], 1e-2)(
                                          None, getattr(setup['kt'], prior))
  assert single.mean.shape == (12, 2) and single.variance is None
  np.testing.assert_allclose(single.mean, out.mean[1], rtol=1e-12)


def test_sweep_reads_stores_and_tuples_of_get(setup, tmp_path):
  paths = {}
  for name, a, b in (('train', setup['x'], None), ('test', setup['xt'],
                                                   setup['x']),
                     ('tt', setup['xt'], None)):
    paths[name] = str(tmp_path / f'{name}.h5')
    compute_kernel(setup['kernel_fn'], a, b, out=paths[name], arch='erf',
                   get=('nngp', 'ntk'), batch_size=6, runner=LocalRunner(1),
                   progress=False)
  fn = predict.gp_inference_sweep(paths['train'], setup['y'], [0.1, 0.3],
                                  memory_limit=None)
  both = fn(('nngp', 'ntkgp'), paths['test'], paths['tt'])
  arrays = predict.gp_inference_sweep(setup['k'], setup['y'], [0.1, 0.3])(
      ('nngp', 'ntkgp'), setup['kt'], setup['ktt'])
  for g in ('nngp', 'ntkgp'):
    np.testing.assert_allclose(getattr(both, g).mean, getattr(arrays, g).mean,
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(getattr(both, g).variance,
                               getattr(arrays, g).variance, rtol=1e-10,
                               atol=1e-12)
  with pytest.raises(ValueError, match='`get` must be one of'):
    fn('cov1', paths['test'])
  with pytest.raises(ValueError, match='non-negative'):
    predict.gp_inference_sweep(paths['train'], setup['y'], [-1.])


def test_nystrom_with_every_point_as_centre_is_gp_inference(setup):
  fn = predict.gp_inference_nystrom(setup['kernel_fn'], setup['x'],
                                    setup['y'], diag_reg=[1e-2, 1e-1],
                                    n_centres=60, tol=1e-12, posterior=True)
  assert fn.result.centres.tolist() == list(range(60))
  got = fn(setup['xt'])
  variance = fn.variance(setup['xt'])
  for i, reg in enumerate([1e-2, 1e-1]):
    ref = predict.gp_inference(setup['k'].nngp, setup['y'], diag_reg=reg)(
        'nngp', setup['kt'].nngp, setup['ktt'].nngp)
    np.testing.assert_allclose(got[i], ref.mean, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(variance[i], np.diag(ref.covariance),
                               rtol=1e-7, atol=1e-10)
  ntk = predict.gp_inference_nystrom(setup['kernel_fn'], setup['x'],
                                     setup['y'], diag_reg=1e-2, get='ntkgp',
                                     n_centres=60, tol=1e-12, posterior=True)
  ref = predict.gp_inference(setup['k'], setup['y'], diag_reg=1e-2)(
      ('ntk', 'ntkgp'), setup['kt'], setup['ktt'])
  np.testing.assert_allclose(ntk(setup['xt']), ref.ntk.mean, rtol=1e-8,
                             atol=1e-10)
  np.testing.assert_allclose(ntk.variance(setup['xt']),
                             np.diag(ref.ntkgp.covariance), rtol=1e-7,
                             atol=1e-10)
