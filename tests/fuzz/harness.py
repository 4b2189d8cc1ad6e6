"""The process libFuzzer runs: `python tests/fuzz/harness.py TARGET [libFuzzer args...]`.

Normally started by run.py, which sets the environment (which qwire build, sanitizer runtime) and
reads the result. Run it by hand to pass libFuzzer flags directly, e.g. to reproduce a finding:

    PYTHONPATH=/tmp/qwf/src python tests/fuzz/harness.py loads crash-1234...

The native extension is instrumented when it was built with QWIRE_FUZZ=1 (tests/fuzz/build.sh);
its coverage hooks need libFuzzer's symbols loaded globally before qwire is imported, so this
file loads atheris's libFuzzer runtime first unless a sanitizer runtime with libFuzzer was
LD_PRELOADed (the ASan recipe in README.md). qwire's Python modules are instrumented by atheris.
"""
import ctypes
import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]  # targets, hostile; strategies (tests/)


def load_libfuzzer():
    if "with_fuzzer" in os.environ.get("LD_PRELOAD", ""):
        return
    spec = importlib.util.find_spec("atheris")
    if spec is None:
        sys.exit("atheris is not installed: pip install atheris")
    site = os.path.dirname(os.path.dirname(spec.origin))
    runtime = os.path.join(site, "ubsan_with_fuzzer.so")
    if os.path.exists(runtime):
        # libFuzzer plus the UBSan runtime (inert for code not built with UBSan), global so that
        # an instrumented extension's __sanitizer_cov_* references resolve to it.
        ctypes.CDLL(runtime, mode=os.RTLD_NOW | os.RTLD_GLOBAL)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    name = sys.argv.pop(1)
    load_libfuzzer()
    import atheris

    with atheris.instrument_imports(include=["qwire"]):
        import qwire  # noqa: F401

    import targets

    if name not in targets.TARGETS:
        sys.exit(f"unknown target {name!r}; targets: {', '.join(targets.TARGETS)}")
    t = targets.TARGETS[name]
    if not t.available():
        print(f"target {name} unavailable: its entry point is not in this qwire", file=sys.stderr)
        sys.exit(77)
    print(f"qwire from {os.path.dirname(qwire.__file__)}; target {name}: {t.doc}", file=sys.stderr)
    atheris.Setup(sys.argv, t)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
