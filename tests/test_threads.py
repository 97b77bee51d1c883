"""One BLAS thread in the ServerApp's and every ClientApp's process (fl_app.threads)."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json
from fl_app.server_app import main  # noqa: F401  (the entry module imports fl_app.threads)
from fl_app.threads import one_blas_thread
import numpy
one_blas_thread()
import scipy.linalg  # loaded after the limit: covered by OPENBLAS_NUM_THREADS
from threadpoolctl import threadpool_info
print(json.dumps([(i["user_api"], i["num_threads"]) for i in threadpool_info()]))
"""


def test_every_blas_library_runs_on_one_thread_including_those_loaded_later():
    env_free = {"PATH": "/usr/bin:/bin"}  # no OPENBLAS_NUM_THREADS from outside
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         env=env_free, check=True, timeout=300).stdout  # fmt: skip
    pools = json.loads(out.strip().splitlines()[-1])
    blas = [threads for api, threads in pools if api == "blas"]
    assert len(blas) >= 2 and set(blas) == {1}, pools  # NumPy's OpenBLAS and SciPy's
