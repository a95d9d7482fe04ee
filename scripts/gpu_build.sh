#!/usr/bin/env bash
# Builds btx on a GPU machine against PyTorch's bundled C++ library (LibTorch with CUDA) and runs
# the tests, those labelled `gpu` included. The CPU machines use scripts/setup.sh instead.
#
# The GPU machines of this project have PyTorch, CUDA, CMake and ninja but no package archive,
# so btx's other build dependencies travel as Debian packages, fetched on a machine that has
# Debian's archive and unpacked on the GPU machine into a private prefix (never into /):
#
#   scripts/gpu_build.sh --fetch [--deps .gpu-deps]      # on a Debian machine: downloads the .debs
#   scripts/gpu_build.sh [--deps .gpu-deps] [--build build-gpu] [--no-test] [--arch 90]
#                        [--targets "btx btx_gpu_tests"] [--jobs N]
#                                                        # on the GPU machine
# (--targets: only these (default: all); scripts/gpu_check.sh builds what its check runs.)
#
# The build matches PyTorch's C++ ABI flag (torch._C._GLIBCXX_USE_CXX11_ABI), finds LibTorch
# through torch.utils.cmake_prefix_path (or $TORCH_PREFIX), and builds for the GPU's compute
# capability (--arch, default: what torch reports for GPU 0). Status: written without a GPU
# machine at hand (no session of issue [8/8] so far was lent one); --fetch is what has run.
set -euo pipefail
cd "$(dirname "$0")/.."

DEPS=.gpu-deps
BUILD=build-gpu
FETCH=0
TEST=1
ARCH=""
TARGETS=""
JOBS=$(nproc)
while (($#)); do
  case "$1" in
    --fetch) FETCH=1; shift ;;
    --deps) DEPS=$2; shift 2 ;;
    --build) BUILD=$2; shift 2 ;;
    --no-test) TEST=0; shift ;;
    --arch) ARCH=$2; shift 2 ;;
    --targets) TARGETS=$2; shift 2 ;;
    --jobs) JOBS=$2; shift 2 ;;
    *) echo "gpu_build: unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done

# Headers and CMake/pkg-config files, and the shared libraries they link or run.
PACKAGES=(
  nlohmann-json3-dev libtomlplusplus-dev libtomlplusplus3 libcli11-dev
  libspdlog-dev libspdlog1.10 libfmt-dev libfmt9
  libgtest-dev libgmock-dev googletest libbenchmark-dev libbenchmark1debian
  libcpp-httplib-dev libcpp-httplib0.11 libbrotli-dev libbrotli1 libssl-dev libssl3
  zlib1g-dev zlib1g
  libjs-chart.js sentencepiece libsentencepiece0
)

if ((FETCH)); then
  command -v apt-get > /dev/null || { echo "gpu_build --fetch needs apt-get (a Debian machine)" >&2; exit 1; }
  mkdir -p "$DEPS"
  (cd "$DEPS" && apt-get download "${PACKAGES[@]}")
  echo "gpu_build: $(ls "$DEPS"/*.deb | wc -l) packages in $DEPS; carry it to the GPU machine"
  exit 0
fi

ls "$DEPS"/*.deb > /dev/null 2>&1 ||
  { echo "gpu_build: no .deb files in $DEPS: run scripts/gpu_build.sh --fetch on a Debian machine and carry $DEPS" >&2; exit 1; }
PY=${PYTHON:-python3}
"$PY" -c 'import torch; assert torch.cuda.is_available()' 2> /dev/null ||
  { echo "gpu_build: $PY has no PyTorch that sees a GPU" >&2; exit 1; }
TORCH_PREFIX=${TORCH_PREFIX:-$("$PY" -c 'import torch; print(torch.utils.cmake_prefix_path)')}
ABI=$("$PY" -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')
[ -n "$ARCH" ] || ARCH=$("$PY" -c 'import torch; m, n = torch.cuda.get_device_capability(0); print(f"{m}{n}")')

# The packages, unpacked into the build folder: headers, CMake configs, .pc files, libraries.
PREFIX=$PWD/$BUILD/deps
mkdir -p "$PREFIX"
for f in "$DEPS"/*.deb; do dpkg-deb -x "$f" "$PREFIX"; done
LIBDIR=$PREFIX/usr/lib/x86_64-linux-gnu
export PKG_CONFIG_PATH=$LIBDIR/pkgconfig:$PREFIX/usr/share/pkgconfig
export PKG_CONFIG_SYSROOT_DIR=$PREFIX  # the .pc files say /usr: read it as $PREFIX/usr
export LD_LIBRARY_PATH=$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PATH=$PREFIX/usr/bin:$PATH      # spm_train, which btx runs to train tokenizers

echo "gpu_build: LibTorch at $TORCH_PREFIX, CXX11 ABI $ABI, sm_$ARCH"
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$TORCH_PREFIX;$PREFIX/usr;$LIBDIR/cmake;$PREFIX/usr/share/cmake" \
  -DCMAKE_CXX_FLAGS="-D_GLIBCXX_USE_CXX11_ABI=$ABI -I$PREFIX/usr/include" \
  -DCMAKE_CUDA_ARCHITECTURES="$ARCH" -DTORCH_CUDA_ARCH_LIST="${ARCH:0:1}.${ARCH:1}" \
  -DBTX_CHARTJS="$PREFIX/usr/share/javascript/chart.js/chart.min.js"
# shellcheck disable=SC2086
cmake --build "$BUILD" -j "$JOBS" ${TARGETS:+--target $TARGETS}
if ((TEST)); then
  (cd "$BUILD" && ctest -j "$(nproc)" --output-on-failure)
  # The gpu-labelled tests again, alone: here they must run, not skip.
  out=$(cd "$BUILD" && ctest -L gpu --output-on-failure)
  echo "$out"
  if grep -q Skipped <<< "$out"; then echo "gpu_build: gpu tests skipped on a GPU machine" >&2; exit 1; fi
fi
