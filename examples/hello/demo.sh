#!/bin/sh
# The App Container walkthrough: compile the hello web app statically, lay out an image,
# build hello.aci, validate all three forms, list it, and run it.
# Usage: demo.sh WORKDIR   (run by `make demo`; needs go, actool on PATH, and root to run)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=${1:-build/demo}
mkdir -p "$work"
cd "$work"
rm -rf hello hello.aci

echo "== compiling examples/hello (static, CGO_ENABLED=0)"
mkdir -p hello/rootfs/bin
(cd "$here" && CGO_ENABLED=0 GOFLAGS=-mod=mod GOPROXY=off go build -trimpath -ldflags "-s -w" -o "$OLDPWD/hello/rootfs/bin/hello-web" .)
cp "$here/manifest" hello/manifest

echo "== actool build hello hello.aci"
actool build --owner-root hello hello.aci

echo "== actool -debug validate hello/manifest hello hello.aci"
actool -debug validate hello/manifest hello hello.aci

echo "== tar tzf hello.aci"
tar tzf hello.aci

echo "== running hello.aci"
if command -v rkt >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "rkt --dir=rkt-data --insecure-options=image run hello.aci &"
    rkt --dir=rkt-data --insecure-options=image run hello.aci >run.log 2>&1 &
else
    # Until a runtime is installed: unpack the image and run its app in new namespaces.
    rm -rf run && mkdir run
    python3 -c "import sys; from appc.aci import extract_image; extract_image(sys.argv[1], sys.argv[2], rootfs_only=True)" hello.aci run/rootfs
    chroot run/rootfs /bin/hello-web >run.log 2>&1 &
fi
pid=$!
answer=""
for _ in $(seq 50); do
    answer=$(python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:5000/', timeout=1).read().decode().strip())" 2>/dev/null) && break
    sleep 0.1
done
if command -v rkt >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    rkt --dir=rkt-data list
fi
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
if command -v rkt >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    rkt --dir=rkt-data gc --grace-period=0s >/dev/null 2>&1 || true
fi
if [ "$answer" = "Hello from App Container" ]; then
    echo "GET http://127.0.0.1:5000/ -> $answer"
else
    echo "the app did not answer; its log:" >&2
    cat run.log >&2
    exit 1
fi
