#!/usr/bin/env bash
# Fetches the ONNX Runtime shared library the agent's component detector loads at run
# time (the `ort` crate's `load-dynamic`), from the PyPI `onnxruntime` wheel.
#
#   models/fetch-onnxruntime.sh [--arch x86_64|aarch64] [DEST]
#
# DEST defaults to target/onnxruntime/<arch>/. The script downloads the wheel with pip
# (`--no-deps --only-binary=:all:`), unzips onnxruntime/capi/libonnxruntime.so.<version>
# into DEST, checks that it is an ELF shared library of the right architecture that
# exports `OrtGetApiBase`, adds a `libonnxruntime.so` symlink beside it, and prints the
# library's path as its last line (for `ORT_DYLIB_PATH=$(models/fetch-onnxruntime.sh)`).
# Nothing is downloaded when DEST already holds a library that passes the checks.
#
# The CPU execution provider needs only this one file; the wheel's
# libonnxruntime_providers_shared.so is for other execution providers. The aarch64 wheel
# is tagged manylinux_2_28: the library needs glibc >= 2.28 on the gateway.
set -euo pipefail
cd "$(dirname "$0")/.."

version=${ORT_VERSION:-1.32.0}
arch=$(uname -m)
dest=
while (($#)); do
  case $1 in
    --arch) arch=$2; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    -*) echo "fetch-onnxruntime: unknown option $1" >&2; exit 64 ;;
    *) dest=$1 ;;
  esac
  shift
done
case $arch in
  x86_64|amd64) arch=x86_64; platform=manylinux_2_28_x86_64; elf_machine=62 ;;
  aarch64|arm64) arch=aarch64; platform=manylinux_2_28_aarch64; elf_machine=183 ;;
  *) echo "fetch-onnxruntime: unsupported architecture $arch (x86_64 or aarch64)" >&2; exit 64 ;;
esac
dest=${dest:-target/onnxruntime/$arch}
lib="$dest/libonnxruntime.so.$version"

# Exit 0 when $1 is an ELF shared library for $elf_machine exporting OrtGetApiBase.
check_library() {
  python3 - "$1" "$elf_machine" <<'PY'
import struct, sys
path, machine = sys.argv[1], int(sys.argv[2])
try:
    with open(path, "rb") as f:
        data = f.read()
except OSError as e:
    sys.exit(f"fetch-onnxruntime: cannot read {path}: {e}")
if data[:4] != b"\x7fELF" or data[4] != 2:
    sys.exit(f"fetch-onnxruntime: {path} is not a 64-bit ELF file")
e_type, e_machine = struct.unpack_from("<HH", data, 16)
if e_type != 3:
    sys.exit(f"fetch-onnxruntime: {path} is not a shared library (ELF type {e_type})")
if e_machine != machine:
    sys.exit(f"fetch-onnxruntime: {path} is for ELF machine {e_machine}, expected {machine}")
if b"OrtGetApiBase" not in data:
    sys.exit(f"fetch-onnxruntime: {path} does not export OrtGetApiBase")
PY
}

if [[ -f $lib ]] && check_library "$lib" 2>/dev/null; then
  echo "fetch-onnxruntime: $lib already present" >&2
else
  mkdir -p "$dest"
  wheels=$(mktemp -d)
  trap 'rm -rf "$wheels"' EXIT
  echo "fetch-onnxruntime: downloading onnxruntime==$version ($platform)" >&2
  # The library does not depend on the Python version: any cp3xx wheel's capi/ works,
  # so ask for one Python version that has wheels for both architectures.
  python3 -m pip download --quiet --disable-pip-version-check --no-deps \
    --only-binary=:all: --platform "$platform" --python-version 3.11 \
    --dest "$wheels" "onnxruntime==$version" >&2
  python3 - "$wheels" "$lib" "$version" <<'PY'
import glob, os, sys, zipfile
wheels, lib, version = sys.argv[1:]
found = glob.glob(os.path.join(wheels, "onnxruntime-*.whl"))
if not found:
    sys.exit("fetch-onnxruntime: pip downloaded no onnxruntime wheel")
member = f"onnxruntime/capi/libonnxruntime.so.{version}"
with zipfile.ZipFile(found[0]) as z:
    if member not in z.namelist():
        sys.exit(f"fetch-onnxruntime: {os.path.basename(found[0])} has no {member}")
    tmp = lib + ".partial"
    with z.open(member) as src, open(tmp, "wb") as dst:
        dst.write(src.read())
    os.replace(tmp, lib)
print(f"fetch-onnxruntime: {lib} from {os.path.basename(found[0])}", file=sys.stderr)
PY
  check_library "$lib"
fi
ln -sfn "libonnxruntime.so.$version" "$dest/libonnxruntime.so"
echo "$(cd "$dest" && pwd)/libonnxruntime.so.$version"
