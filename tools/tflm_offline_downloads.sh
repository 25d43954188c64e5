#!/usr/bin/env bash
# Populates tensorflow/lite/micro/tools/make/downloads/ of a TFLM checkout from local
# git repositories, so TFLM's Makefile builds without network access. It reproduces
# what TFLM's *_download.sh scripts do (folder names, BUILD-file removal, patches),
# with `git archive` of the pinned commits instead of a zip download.
#
# Usage: tools/tflm_offline_downloads.sh TFLM_DIR
#
# Each dependency comes from a git directory (bare mirror or checkout) named by an
# environment variable; an unset variable skips that dependency with a notice:
#   FLATBUFFERS_GIT  google/flatbuffers        tag v25.9.23 (+ TFLM flatbuffers.patch)
#   GEMMLOWP_GIT     google/gemmlowp           719139ce755a0f31cbf1c37f7f98adcc7fc9f425
#   RUY_GIT          google/ruy                d37128311b445e758136b8602d1bbd2a755e115d
#   KISSFFT_GIT      mborgerding/kissfft       tag v130 (+ TFLM kissfft.patch)
#   CMSIS_GIT        ARM-software/CMSIS_6      5782d6f8057906d360f4b95ec08a2354afe5c9b9
#   CORTEX_DFP_GIT   ARM-software/Cortex_DFP   c2c70a97a20fb355815e2ead3d4a40e35a4a3cdf
#   CMSIS_NN_GIT     ARM-software/CMSIS-NN     4ab83cc3cc98fb85ed6dafb55e8ca02f1628dcae
#   PRINTF_GIT       eyalroz/printf            f8ed5a9bd9fa8384430973465e94aa14c925872d
# The pins are those of TFLM 90b983c2b3f1480642e040bbd2ddb37b998f3424; override one
# with <NAME>_REV (e.g. CMSIS_NN_REV) when your TFLM pins another.
#
# Also created: downloads/pigweed (empty: TFLM's pigweed_download.sh then skips the
# clone; pigweed is only used by TFLM's own code-style checks) and
# downloads/gcc_embedded (empty: the Arm toolchain is taken from PATH, so
# arm-none-eabi-gcc must be installed, e.g. Debian's gcc-arm-none-eabi).
# Existing folders are left alone, as TFLM's scripts do.
set -euo pipefail

TFLM_DIR=${1:?usage: $0 TFLM_DIR}
TFLM_DIR=$(cd "$TFLM_DIR" && pwd)
MAKE_DIR=$TFLM_DIR/tensorflow/lite/micro/tools/make
DL=$MAKE_DIR/downloads
[[ -f $MAKE_DIR/Makefile ]] || { echo "error: $TFLM_DIR is not a TFLM checkout" >&2; exit 1; }
mkdir -p "$DL"

# extract NAME GITDIR REV FOLDER [PATCH]: git archive REV into downloads/FOLDER,
# drop BUILD files (they would confuse Bazel), apply PATCH with patch -p1 as TFLM's
# download_and_extract.sh does.
extract() {
  local name=$1 gitdir=$2 rev=$3 folder=$4 patch=${5:-}
  local dest=$DL/$folder
  if [[ -e $dest ]]; then
    echo "$folder: exists, skipped"
    return
  fi
  if [[ -z $gitdir ]]; then
    echo "$folder: ${name}_GIT not set, skipped"
    return
  fi
  if ! git --git-dir="$(resolve_gitdir "$gitdir")" rev-parse -q --verify "$rev^{commit}" >/dev/null; then
    echo "error: $name: $rev not found in $gitdir" >&2
    exit 1
  fi
  local tmp
  tmp=$(mktemp -d "$DL/.${folder//\//_}.XXXXXX")
  git --git-dir="$(resolve_gitdir "$gitdir")" archive --format=tar "$rev" | tar -x -C "$tmp"
  find "$tmp" \( -name BUILD -o -name BUILD.bazel \) -type f -delete
  if [[ -n $patch ]]; then
    patch -s -p1 -d "$tmp" < "$patch"
  fi
  mv "$tmp" "$dest"
  echo "$folder: $name $rev"
}

# A checkout's .git or a bare repository.
resolve_gitdir() {
  if [[ -d $1/.git ]]; then echo "$1/.git"; else echo "$1"; fi
}

extract FLATBUFFERS "${FLATBUFFERS_GIT:-}" "${FLATBUFFERS_REV:-v25.9.23}" flatbuffers \
  "$MAKE_DIR/flatbuffers.patch"
extract GEMMLOWP "${GEMMLOWP_GIT:-}" "${GEMMLOWP_REV:-719139ce755a0f31cbf1c37f7f98adcc7fc9f425}" gemmlowp
extract RUY "${RUY_GIT:-}" "${RUY_REV:-d37128311b445e758136b8602d1bbd2a755e115d}" ruy
extract KISSFFT "${KISSFFT_GIT:-}" "${KISSFFT_REV:-v130}" kissfft \
  "$TFLM_DIR/third_party/kissfft/kissfft.patch"
extract CMSIS "${CMSIS_GIT:-}" "${CMSIS_REV:-5782d6f8057906d360f4b95ec08a2354afe5c9b9}" cmsis
if [[ -d $DL/cmsis ]]; then
  extract CORTEX_DFP "${CORTEX_DFP_GIT:-}" \
    "${CORTEX_DFP_REV:-c2c70a97a20fb355815e2ead3d4a40e35a4a3cdf}" cmsis/Cortex_DFP
fi
extract CMSIS_NN "${CMSIS_NN_GIT:-}" "${CMSIS_NN_REV:-4ab83cc3cc98fb85ed6dafb55e8ca02f1628dcae}" cmsis_nn
extract PRINTF "${PRINTF_GIT:-}" "${PRINTF_REV:-f8ed5a9bd9fa8384430973465e94aa14c925872d}" eyalroz_printf

for empty in pigweed gcc_embedded; do
  if [[ ! -e $DL/$empty ]]; then
    mkdir -p "$DL/$empty"
    echo "$empty: empty folder (download skipped)"
  fi
done
if ! command -v arm-none-eabi-gcc >/dev/null; then
  echo "note: arm-none-eabi-gcc is not on PATH; Cortex-M targets will not build" >&2
fi
