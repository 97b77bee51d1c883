"""One BLAS thread per fl_app process.

NumPy's OpenBLAS starts a pool of spinning threads for its level-1 and level-3 calls. In
a simulation process that also holds Ray's and TensorFlow's threads on a 2-core machine,
the ServerApp's `make_classification` (task=synthetic: one small `np.dot` per cluster)
was seen spinning in `blas_level1_thread` for 13 minutes where it takes 0.3 s alone: its
pool's workers never got the CPU. fl_app's NumPy work (packing, partitions, FedAvg's
mean) is memory-bound and gains nothing from BLAS threads, and TensorFlow does not use
OpenBLAS; so the ServerApp and every ClientApp process runs BLAS on one thread.
"""

from __future__ import annotations

import os

import numpy  # noqa: F401  (loads NumPy's OpenBLAS, so that the limit below covers it)
from threadpoolctl import threadpool_limits

_limits = None


def one_blas_thread() -> None:
    """Limit every BLAS library loaded in this process to one thread, and those loaded
    later (SciPy's, with scikit-learn) through the environment (idempotent)."""
    global _limits
    if _limits is None:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # not OMP_*: TensorFlow's own
        _limits = threadpool_limits(limits=1, user_api="blas")
