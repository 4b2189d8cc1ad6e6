"""Build the Cython core.

Build switches, all through the environment so that `pip install .` stays plain:
  QWIRE_DEBUG=1      no optimisation, C asserts on, Cython line tracing off
  QWIRE_ANNOTATE=1   write Cython's HTML annotation next to the sources
  QWIRE_SANITIZE=1   AddressSanitizer + UndefinedBehaviorSanitizer (see tests/fuzz/README.md);
                     =recover: UBSan reports and continues
  QWIRE_FUZZ=1       libFuzzer coverage instrumentation for atheris
"""
import os

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup


def _flag(name):
    return os.environ.get(name, "") not in ("", "0")


compile_args = ["-O3"] if not _flag("QWIRE_DEBUG") else ["-O0", "-g", "-UNDEBUG"]
link_args = []
if _flag("QWIRE_SANITIZE"):
    # QWIRE_SANITIZE=recover: UBSan reports every site and goes on (UBSAN_OPTIONS=halt_on_error=0)
    recover = "-fsanitize-recover=undefined" if os.environ["QWIRE_SANITIZE"] == "recover" else "-fno-sanitize-recover=undefined"
    san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", recover, "-g"]
    compile_args = ["-O1"] + san
    link_args += san
if _flag("QWIRE_FUZZ"):
    compile_args += ["-fsanitize=fuzzer-no-link"]
    link_args += ["-fsanitize=fuzzer-no-link"]

common = dict(
    include_dirs=[numpy.get_include(), "cython"],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    extra_compile_args=compile_args,
    extra_link_args=link_args,
)

extensions = [
    Extension("qwire._core", ["cython/_core.pyx"], **common),
    Extension("qwire._compress", ["cython/_compress.pyx"], **common),
]

# QWIRE_ONLY=_core (comma-separated) builds a subset, for working on one module at a time.
_only = [n for n in os.environ.get("QWIRE_ONLY", "").split(",") if n]
if _only:
    extensions = [e for e in extensions if e.name.rsplit(".", 1)[1] in _only]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
        annotate=_flag("QWIRE_ANNOTATE"),
    ),
)
