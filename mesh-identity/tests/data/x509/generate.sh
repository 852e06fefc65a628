#!/bin/sh
# Regenerates the X.509 fixtures with OpenSSL 3, the way Istio's tools/certs Makefiles make a plug-in CA: a
# root, an intermediate (`ca-cert.pem` + `ca-key.pem`), `cert-chain.pem` = intermediate + root. Keys are in the
# traditional PEM forms (`EC PRIVATE KEY`, `RSA PRIVATE KEY`) those tools and istiod write. Leaves signed by the
# EC intermediate exercise the X.509-SVID profile checks. Tests take `now` from each certificate's own
# validity, so the fixtures do not go stale.
set -eu
cd "$(dirname "$0")"
DAYS=7300
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

ca_ext="basicConstraints=critical,CA:TRUE
keyUsage=critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier=hash"

# plugin_ca <dir> <genkey command for root> <genkey command for intermediate>
plugin_ca() {
  dir=$1; mkdir -p "$dir"
  sh -c "$2" > "$tmp/root-key.pem"
  openssl req -x509 -new -key "$tmp/root-key.pem" -days $DAYS -subj "/O=Istio/CN=Root CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out "$dir/root-cert.pem"
  sh -c "$3" > "$dir/ca-key.pem"
  openssl req -new -key "$dir/ca-key.pem" -subj "/O=Istio/CN=Intermediate CA/L=cluster1" -out "$tmp/ca.csr"
  printf '%s\n' "$ca_ext" > "$tmp/ca.ext"
  openssl x509 -req -in "$tmp/ca.csr" -CA "$dir/root-cert.pem" -CAkey "$tmp/root-key.pem" -set_serial 0x1001 \
    -days $DAYS -extfile "$tmp/ca.ext" -out "$dir/ca-cert.pem"
  cat "$dir/ca-cert.pem" "$dir/root-cert.pem" > "$dir/cert-chain.pem"
}

plugin_ca plugin-ec "openssl ecparam -name prime256v1 -genkey -noout" \
  "openssl ecparam -name prime256v1 -genkey -noout"
plugin_ca plugin-rsa "openssl genrsa -traditional 2048 2>/dev/null" "openssl genrsa -traditional 2048 2>/dev/null"

# leaf <name> <extensions>: a P-256 leaf signed by the EC intermediate.
serial=0x2000
leaf() {
  serial=$((serial + 1))
  openssl ecparam -name prime256v1 -genkey -noout > "$tmp/leaf-key.pem"
  openssl req -new -key "$tmp/leaf-key.pem" -subj "/O=fixture" -out "$tmp/leaf.csr"
  printf '%s\n' "$2" > "$tmp/leaf.ext"
  openssl x509 -req -in "$tmp/leaf.csr" -CA plugin-ec/ca-cert.pem -CAkey plugin-ec/ca-key.pem -set_serial $serial \
    -days $DAYS -extfile "$tmp/leaf.ext" -out "leaf-$1.pem"
}

svid_ext="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth"
uri="subjectAltName=critical,URI:spiffe://cluster.local/ns/default/sa/bookinfo"

leaf istio "$svid_ext
$uri"
leaf two-uri-sans "$svid_ext
subjectAltName=critical,URI:spiffe://cluster.local/ns/default/sa/bookinfo,URI:spiffe://cluster.local/ns/prod/sa/admin"
leaf no-uri-san "$svid_ext
subjectAltName=DNS:bookinfo.default.svc.cluster.local"
leaf not-spiffe "$svid_ext
subjectAltName=URI:https://cluster.local/ns/default/sa/bookinfo"
leaf client-auth-only "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
$uri"
leaf key-cert-sign "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyCertSign
$uri"
leaf no-key-usage "basicConstraints=critical,CA:FALSE
$uri"
leaf ca "basicConstraints=critical,CA:TRUE
keyUsage=critical,digitalSignature,keyCertSign
$uri"

# A CSR from a workload key that claims another identity in its SANs and subject.
openssl ecparam -name prime256v1 -genkey -noout > "$tmp/csr-key.pem"
openssl req -new -key "$tmp/csr-key.pem" -subj "/CN=istiod.istio-system.svc" \
  -addext "subjectAltName=URI:spiffe://cluster.local/ns/istio-system/sa/istiod-service-account" \
  -out csr-claims-istiod.pem
