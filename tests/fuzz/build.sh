#!/usr/bin/env bash
# Build a private copy of qwire's extensions for fuzzing or sanitizing, outside the work tree,
# so that the in-place build other people use is left alone.
#
#   tests/fuzz/build.sh DEST [fuzz|asan|asan-fuzz|plain]
#
#   fuzz       clang, -fsanitize=fuzzer-no-link (coverage for atheris/libFuzzer)   [default]
#   asan       -fsanitize=address,undefined (QWIRE_SANITIZE=1)
#   asan-fuzz  both: ASan + UBSan + coverage; run with LD_PRELOAD=asan_with_fuzzer.so
#   asan-recover  ASan + UBSan that reports every undefined-behaviour site and continues
#   plain      the ordinary optimised build
#
# Afterwards: PYTHONPATH=DEST/src python ...  (tests/fuzz/README.md has the full recipes)
set -euo pipefail
dest=${1:?usage: build.sh DEST [fuzz|asan|asan-fuzz|plain]}
mode=${2:-fuzz}
root="$(cd "$(dirname "$0")/../.." && pwd)"

mkdir -p "$dest"
dest="$(cd "$dest" && pwd)"
rm -rf "$dest/src" "$dest/cython" "$dest/build"
cp -r "$root/src" "$root/cython" "$root/setup.py" "$root/pyproject.toml" "$root/README.md" "$dest/"
# Never reuse the work tree's compiled modules or generated C.
find "$dest/src" -name '*.so' -delete
rm -f "$dest"/cython/*.c

unset QWIRE_FUZZ QWIRE_SANITIZE
case "$mode" in
  fuzz) export QWIRE_FUZZ=1 ;;
  asan) export QWIRE_SANITIZE=1 ;;
  asan-recover) export QWIRE_SANITIZE=recover ;;
  asan-fuzz) export QWIRE_FUZZ=1 QWIRE_SANITIZE=1 ;;
  plain) ;;
  *) echo "unknown mode $mode" >&2; exit 2 ;;
esac
if [ "$mode" != plain ]; then
  if ! command -v clang >/dev/null; then
    if [ "$mode" = asan ] || [ "$mode" = asan-recover ]; then
      echo "clang not found: building the sanitizer build with gcc" >&2
    else
      echo "clang is needed for -fsanitize=fuzzer-no-link (apt-get install clang)" >&2
      exit 3
    fi
  else
    export CC=clang LDSHARED="clang -shared"
  fi
fi
cd "$dest"
python setup.py build_ext --inplace -j 1 >"$dest/build.log" 2>&1 || { tail -40 "$dest/build.log" >&2; exit 1; }
{ git -C "$root" rev-parse --short HEAD 2>/dev/null || echo "?"; } > "$dest/COMMIT"
if ! git -C "$root" diff --quiet -- src cython setup.py 2>/dev/null; then echo "+local changes" >> "$dest/COMMIT"; fi
echo "built qwire ($mode) in $dest/src"
