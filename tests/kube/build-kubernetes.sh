#!/usr/bin/env bash
# Build Kubernetes v1.20.2 for the tests on a fresh Debian bookworm machine using ONLY Debian
# packages: the control plane (kube-apiserver, kube-controller-manager, kube-scheduler), the
# lab nodes' kubelet, and kubectl.
#   - source: Debian's `kubernetes` source package (orig tarball = upstream v1.20.2 incl. vendor/)
#   - toolchain: golang-go (1.19), rsync, make
#   - fix for Go >= 1.18: swap vendored github.com/modern-go/reflect2 v1.0.1 for Debian's 1.0.2
# No host names: deb-src entries are derived from the machine's own apt sources.
#
#   OUT=/var/cache/herald-k8s/bin tests/kube/build-kubernetes.sh   # prints the kube-apiserver path
# Run by `cargo xtask setup --kube` (and so by `cargo xtask test`); a no-op once the binaries
# are cached.
set -euo pipefail
OUT=${OUT:-/var/cache/herald-k8s/bin}
WORK=${WORK:-/var/cache/herald-k8s/work}
TAGS=${TAGS:-providerless}          # drop in-tree cloud providers: smaller, faster build
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)
built() { for b in "${BINARIES[@]}"; do [[ -x "$OUT/$b" ]] || return 1; done; }
if built && "$OUT/kube-apiserver" --version 2>/dev/null | grep -q v1.20.2; then
  echo "$OUT/kube-apiserver"; exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends golang-go etcd-server rsync make openssl curl ca-certificates \
  golang-github-modern-go-reflect2-dev >&2

rm -rf "$WORK"; mkdir -p "$WORK/apt/sources.d" "$WORK/apt/lists/partial" "$OUT"
# deb-src twins of the configured Debian sources (deb822 *.sources and one-line lists)
# (only Debian's own archives: files signed with debian-archive-keyring / lines for bookworm)
for f in /etc/apt/sources.list.d/*.sources; do
  [[ -f "$f" ]] && grep -q 'debian-archive-keyring' "$f" || continue
  sed -e 's/^Types:.*/Types: deb-src/' "$f" > "$WORK/apt/sources.d/$(basename "$f")"
done
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
  [[ -f "$f" ]] || continue
  sed -n 's/^deb \(\(\[[^]]*\] \)\?[^ ]* bookworm\(-updates\|-security\)\? .*\)$/deb-src \1/p' "$f" \
    > "$WORK/apt/sources.d/$(basename "$f" .list).list"
done
APT=(-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$WORK/apt/sources.d"
     -o Dir::State::Lists="$WORK/apt/lists")
apt-get "${APT[@]}" update -qq >&2
(cd "$WORK" && apt-get "${APT[@]}" source --download-only kubernetes >&2)
orig=$(ls "$WORK"/kubernetes_*really1.20.2.orig.tar.gz)
tar -C "$WORK" -xzf "$orig"
SRC="$WORK/kubernetes-1.20.2"

# reflect2 v1.0.1 (vendored) panics at run time when built with Go >= 1.18 (json decode of any map);
# Debian ships v1.0.2 as source in golang-github-modern-go-reflect2-dev.
V="$SRC/vendor/github.com/modern-go/reflect2"
cp "$V/LICENSE" "$WORK/reflect2.LICENSE"; rm -rf "$V"; mkdir -p "$V"
cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.go \
   /usr/share/gocode/src/github.com/modern-go/reflect2/*.s \
   /usr/share/gocode/src/github.com/modern-go/reflect2/go.mod "$V/"
rm -f "$V"/*_test.go; cp "$WORK/reflect2.LICENSE" "$V/LICENSE"
sed -i 's#github.com/modern-go/reflect2 v1.0.1#github.com/modern-go/reflect2 v1.0.2#g' \
  "$SRC/go.mod" "$SRC/vendor/modules.txt"

cd "$SRC"
# GOFLAGS' -tags=... is picked up by hack/lib/golang.sh; vendor mode is the default (go.mod says go 1.15)
CGO_ENABLED=0 GOPROXY=off GOFLAGS="-tags=$TAGS" make WHAT="${BINARIES[*]/#/cmd/}" >&2
for b in "${BINARIES[@]}"; do install -m 0755 "_output/local/bin/linux/amd64/$b" "$OUT/$b"; done
"$OUT/kube-apiserver" --version >&2
echo "$OUT/kube-apiserver"
