#!/usr/bin/env bash
# Installs flash-attn from its upstream prebuilt wheel, never from source (a source build takes hours).
# The wheel is named the way flash-attn's own setup.py names it: the flash-attn version from the
# constraints file, then the CUDA major, torch major.minor and C++11 ABI of the torch installed here,
# and this Python. Usage: flash-attn.sh CONSTRAINTS MODE, where MODE is
#   auto  install it if upstream published that wheel; if not, or if upstream cannot be reached, say so
#         and go on (attention uses sdpa)
#   yes   the build fails without it
#   no    skip it
set -euo pipefail
constraints=$1 mode=${2:-auto}
case $mode in
  auto | yes) ;;
  no) echo "flash-attn: skipped (FLASH_ATTN=no); attention will use sdpa"; exit 0 ;;
  *) echo "flash-attn: FLASH_ATTN must be auto, yes or no, not '$mode'" >&2; exit 2 ;;
esac
# Upstream's release downloads (a test points this at a local server).
releases=${FLASH_ATTN_RELEASES:-https://github.com/Dao-AILab/flash-attention/releases/download}
version=$(sed -nE 's/^flash-attn==([^[:space:]#]+).*/\1/p' "$constraints")
[ -n "$version" ] || { echo "flash-attn: no flash-attn== pin in $constraints" >&2; exit 2; }
url=$(python3 - "$releases" "$version" <<'PY'
import sys
import sysconfig

import torch

releases, version = sys.argv[1:3]
major, minor = torch.__version__.split("+")[0].split(".")[:2]
if torch.version.cuda is None:
    sys.exit("flash-attn: torch here is a CPU build; the image needs its CUDA build")
cuda = torch.version.cuda.split(".")[0]
abi = str(torch._C._GLIBCXX_USE_CXX11_ABI).upper()
py = f"cp{sys.version_info.major}{sys.version_info.minor}"
platform = sysconfig.get_platform().replace("-", "_")
wheel = f"flash_attn-{version}+cu{cuda}torch{major}.{minor}cxx11abi{abi}-{py}-{py}-{platform}.whl"
print(f"{releases}/v{version}/{wheel}")
PY
)
# 0: the wheel exists, 3: upstream has no such wheel, 4: upstream cannot be reached (no route or name
# for it: networks that reach only a package index); anything else is a real error. github.com answers a
# release download with a redirect when the asset exists and 404 when it does not. The CA bundle pip
# is given (PIP_CERT) verifies this request too.
status=0
python3 - "$url" <<'PY' || status=$?
import os
import ssl
import sys
import urllib.error
import urllib.request


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


context = ssl.create_default_context(cafile=os.environ.get("PIP_CERT") or None)
opener = urllib.request.build_opener(NoRedirect, urllib.request.HTTPSHandler(context=context))
try:
    opener.open(urllib.request.Request(sys.argv[1], method="HEAD"), timeout=60).close()
except urllib.error.HTTPError as err:
    if err.code == 404:
        sys.exit(3)
    if err.code not in (301, 302, 303, 307, 308):
        raise
except urllib.error.URLError as err:
    # A certificate that does not verify is a real error (a missing CA bundle), not an absent upstream.
    if isinstance(err.reason, OSError) and not isinstance(err.reason, ssl.SSLError):
        print(f"flash-attn: cannot reach {sys.argv[1]}: {err.reason}", file=sys.stderr)
        sys.exit(4)
    raise
PY
case $status in
  0) python3 -m pip install --no-cache-dir -c "$constraints" "flash-attn @ $url" ;;
  3 | 4)
     if [ "$status" = 3 ]; then why="upstream has no prebuilt wheel"; else why="upstream cannot be reached for"; fi
     if [ "$mode" = yes ]; then
       echo "flash-attn: $why $url (build with FLASH_ATTN=auto or no)" >&2
       exit 1
     fi
     echo "flash-attn: WARNING: $why $url; not installed, attention will use sdpa" ;;
  *) exit "$status" ;;
esac
