"""GP and kernel-regression solves beyond one machine's memory.

* `exact_sweep`: exact posteriors (means, variances, log marginal likelihood)
  for a list of ``diag_reg`` values from kernels given as arrays or
  `nt_gp.store.KernelStore` files, in a memory budget: in memory when the
  kernel fits, else a resumable out-of-core Cholesky factorisation.
* `nystrom_sweep`: Nyström GP means (subset of regressors / DTC, the same
  as GPflow's SGPR with fixed inducing points and noise) and Nyström kernel
  ridge regression for millions of points, by Falkon's preconditioned
  conjugate gradients over blocks of ``K(X, Z)`` computed by the network's
  ``kernel_fn`` (locally or on `tf.distribute` workers) or read from stores;
  with ``posterior=True`` also the Nyström GP's predictive variances, log
  marginal likelihood and Titsias bound (`DTCPosterior`).
* Building blocks: `MemoryBudget`, `PanelPlan`, `PanelFile`, `Targets`,
  `FunctionBlocks`, `StoreBlocks`, `falkon_solve`.

The same solves are available in neural-tangents' style as
`nt_gp.predict.gp_inference_sweep`, and on the command line as
``nt-gp solve``. See docs/large_scale.md.

Example:
  >>> import numpy as np
  >>> from nt_gp.solve import exact_sweep
  >>> k = np.array([[2., 1.], [1., 2.]])
  >>> exact_sweep(k, np.array([1., -1.]), diag_reg=[0., 1.],
  ...             diag_reg_absolute_scale=True).alpha[:, :, 0].round(6).tolist()
  [[1.0, -1.0], [0.5, -0.5]]
"""
from nt_gp.solve._linalg import NotPositiveDefiniteError
from nt_gp.solve.dtc import DTCPosterior
from nt_gp.solve.exact import SweepResult, exact_sweep
from nt_gp.solve.falkon import FalkonResult, falkon_solve
from nt_gp.solve.kernel_blocks import FunctionBlocks, StoreBlocks
from nt_gp.solve.memory import MemoryBudget, MemoryLimitError, parse_memory
from nt_gp.solve.nystrom import NystromResult, nystrom_sweep
from nt_gp.solve.panel_file import (PanelFile, PanelFileError,
                                    PanelFileMismatchError)
from nt_gp.solve.targets import Targets
from nt_gp.solve.tiled import PanelPlan

__all__ = ['exact_sweep', 'SweepResult', 'nystrom_sweep', 'NystromResult',
           'falkon_solve', 'FalkonResult', 'FunctionBlocks', 'StoreBlocks',
           'MemoryBudget', 'MemoryLimitError', 'parse_memory', 'PanelFile',
           'PanelFileError', 'PanelFileMismatchError', 'PanelPlan', 'Targets',
           'NotPositiveDefiniteError', 'DTCPosterior']
