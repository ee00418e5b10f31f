"""1-D regression: infinite networks (NNGP, NTK) vs trained finite networks.

The posterior of an infinitely wide Erf network, as a Bayesian network (NNGP)
and as an infinite ensemble trained by gradient descent on the MSE (NTK), from
`nt_gp.predict.gradient_descent_mse_ensemble`; and an ensemble of finite
networks of the same architecture (`apply_fn`) trained by full-batch gradient
descent in TensorFlow for a time `t = learning_rate * steps`, whose mean and
spread approach the NTK prediction at the same `t` (`predict_fn(t=t, ...)`).

  python docs/tutorials/regression_1d.py [--quick] [--out DIR]

Writes `DIR/regression_1d.png` and prints the distance between the finite
ensemble's mean and the NTK mean at time `t`, and the NTK standard deviation.
"""
import argparse
import os

import numpy as np
import tensorflow as tf

from nt_gp import predict, stax

W_STD, B_STD = 1.5, 0.05


def network(width):
  return stax.serial(stax.Dense(width, W_STD, B_STD), stax.Erf(),
                     stax.Dense(width, W_STD, B_STD), stax.Erf(),
                     stax.Dense(1, W_STD, B_STD))


def data(n_train=8, noise=0.1, seed=0):
  rng = np.random.RandomState(seed)
  x_train = rng.uniform(-np.pi, np.pi, (n_train, 1))
  y_train = np.sin(x_train) + noise * rng.randn(n_train, 1)
  x_test = np.linspace(-np.pi, np.pi, 100)[:, None]
  return x_train, y_train, x_test, np.sin(x_test)


def train_ensemble(init_fn, apply_fn, x, y, x_test, members, steps, lr):
  """Trains `members` networks on 0.5 * mean squared error; test outputs."""
  x = tf.constant(x, tf.float32)
  y = tf.constant(y, tf.float32)
  x_test = tf.constant(x_test, tf.float32)
  outputs = []
  for seed in range(members):
    _, params = init_fn(seed, x.shape)
    params = tf.nest.map_structure(tf.Variable, params)
    variables = tf.nest.flatten(params)

    @tf.function
    def step(params=params, variables=variables):
      with tf.GradientTape() as tape:
        loss = 0.5 * tf.reduce_mean((apply_fn(params, x) - y) ** 2)
      for v, g in zip(variables, tape.gradient(loss, variables)):
        v.assign_sub(lr * g)
      return loss

    for _ in range(steps):
      step()
    outputs.append(apply_fn(params, x_test).numpy())
  return np.stack(outputs)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--quick', action='store_true', help='small sizes')
  parser.add_argument('--out', default='tutorial-output')
  args = parser.parse_args(argv)
  width, members, steps = (256, 4, 400) if args.quick else (1024, 16, 3000)
  lr = 1.0

  x_train, y_train, x_test, y_true = data()
  init_fn, apply_fn, kernel_fn = network(width)

  # Infinite width: closed-form posterior of NNGP and NTK at t = infinity.
  predict_fn = predict.gradient_descent_mse_ensemble(kernel_fn, x_train,
                                                     y_train, diag_reg=1e-4)
  post = predict_fn(x_test=x_test, get=('nngp', 'ntk'), compute_cov=True)
  mean = {g: getattr(post, g).mean.numpy().ravel() for g in ('nngp', 'ntk')}
  std = {g: np.sqrt(np.clip(np.diag(getattr(post, g).covariance.numpy()),
                            0, None)) for g in ('nngp', 'ntk')}

  # The same ensemble after `steps` steps of size `lr` (t = lr * steps).
  t = lr * steps
  at_t = predict_fn(t=t, x_test=x_test, get='ntk', compute_cov=True)
  mean_t = at_t.mean.numpy().ravel()
  std_t = np.sqrt(np.clip(np.diag(at_t.covariance.numpy()), 0, None))

  # Finite width: an ensemble trained by gradient descent.
  outputs = train_ensemble(init_fn, apply_fn, x_train, y_train, x_test,
                           members, steps, lr)[..., 0]
  ens_mean, ens_std = outputs.mean(0), outputs.std(0)
  gap = np.sqrt(np.mean((ens_mean - mean_t) ** 2))
  print(f'finite ensemble ({members} networks of width {width}, {steps} '
        f'steps, t={t:g}): RMS distance of its mean to the NTK mean at t '
        f'{gap:.3f}; mean NTK std at t {std_t.mean():.3f}')
  for g in ('nngp', 'ntk'):
    rmse = np.sqrt(np.mean((mean[g] - y_true.ravel()) ** 2))
    print(f'{g.upper():5s} posterior mean: RMSE to sin(x) {rmse:.3f}')

  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
  xt = x_test.ravel()
  panels = ((axes[0], 'NNGP posterior', mean['nngp'], std['nngp'],
             'tab:blue'),
            (axes[1], f'NTK ensemble after training time t={t:g}', mean_t,
             std_t, 'tab:orange'))
  for ax, title, m, s, color in panels:
    ax.plot(xt, y_true, 'k:', lw=1, label='sin(x)')
    ax.plot(xt, m, color=color, label='infinite width: mean')
    ax.fill_between(xt, m - 2 * s, m + 2 * s, color=color, alpha=0.2,
                    label='± 2 std')
    ax.scatter(x_train, y_train, color='k', zorder=3, label='training data')
    ax.set_title(title)
    ax.set_xlabel('x')
  axes[1].plot(xt, mean['ntk'], color='tab:orange', ls='--', lw=1,
               label='NTK mean at t = infinity')
  axes[1].plot(xt, ens_mean, color='tab:green',
               label=f'{members} trained networks: mean')
  axes[1].fill_between(xt, ens_mean - 2 * ens_std, ens_mean + 2 * ens_std,
                       color='tab:green', alpha=0.15, label='± 2 std')
  for ax in axes:
    ax.legend(fontsize=7, loc='lower right')
  os.makedirs(args.out, exist_ok=True)
  path = os.path.join(args.out, 'regression_1d.png')
  fig.savefig(path, dpi=90, bbox_inches='tight')
  print(f'figure: {path}')
  return 0


if __name__ == '__main__':
  raise SystemExit(main())
