"""How fl_app imports TenSEAL (ops/warm_exec.py preloads it earlier, before TensorFlow).

TensorFlow and TenSEAL ship clashing copies of shared C++ symbols: with TensorFlow
imported first, TenSEAL's deserialisation crashes the process (SIGSEGV). Loading
TenSEAL's extension with RTLD_DEEPBIND makes it resolve its own symbols first.
"""

import os
import sys

_flags = sys.getdlopenflags()
sys.setdlopenflags(_flags | os.RTLD_DEEPBIND)
try:
    import tenseal as ts
    from tenseal import sealapi
finally:
    sys.setdlopenflags(_flags)

__all__ = ["sealapi", "ts"]
