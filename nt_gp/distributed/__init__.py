"""Kernels computed block by block into a store, on devices or a cluster.

* `compute_kernel`: the block loop writing a `nt_gp.store.KernelStore`.
* `LocalRunner`: blocks on this process's devices (GPUs, or virtual CPUs).
* `ClusterRunner`: blocks on the workers of a `tf.distribute` cluster
  (`ParameterServerStrategy` + `ClusterCoordinator`; failed workers' blocks
  are re-run elsewhere).
* `LocalCluster`: worker and parameter-server processes on 127.0.0.1.

See `docs/scale_out.md`.

Example:
  >>> import os, tempfile
  >>> import numpy as np
  >>> from nt_gp import stax
  >>> from nt_gp.distributed import compute_kernel, LocalRunner
  >>> _, _, kernel_fn = stax.serial(stax.Dense(1), stax.Relu(), stax.Dense(1))
  >>> path = os.path.join(tempfile.mkdtemp(), 'k.h5')
  >>> compute_kernel(kernel_fn, np.ones((4, 2)), out=path, arch='mlp',
  ...                batch_size=2, runner=LocalRunner(1), progress=False) == path
  True
"""
from nt_gp.distributed.cluster import ClusterRunner, cluster_resolver
from nt_gp.distributed.compute import BlockComputer, LocalRunner, compute_kernel
from nt_gp.distributed.servers import LocalCluster, free_port

__all__ = ['compute_kernel', 'LocalRunner', 'ClusterRunner', 'LocalCluster',
           'BlockComputer', 'cluster_resolver', 'free_port']
