#!/usr/bin/env bash
# Makes a CA, a server certificate for Saker's receiver and a client
# certificate for the API server's webhook backend, in the current
# directory. Usage: make-certs.sh SAKER_HOST [SAKER_IP]
# (the name and, optionally, the IP the API server uses to reach Saker).
set -euo pipefail
host=${1:?usage: make-certs.sh SAKER_HOST [SAKER_IP]}
ip=${2:-}
san="DNS:$host"
[ -n "$ip" ] && san="$san,IP:$ip"

openssl req -x509 -newkey rsa:2048 -nodes -days 365 \
  -keyout ca.key -out ca.pem -subj "/CN=saker-audit-ca"

openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr \
  -subj "/CN=$host"
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$san" > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
  -days 365 -out server.pem -extfile server.ext

openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr \
  -subj "/CN=kube-apiserver-audit"
printf 'extendedKeyUsage=clientAuth\n' > apiserver.ext
openssl x509 -req -in apiserver.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
  -days 365 -out apiserver.pem -extfile apiserver.ext

rm -f ./*.csr ./*.ext ca.srl
echo "made ca.pem, server.pem/server.key (for saker), apiserver.pem/apiserver.key (for the API server)"
