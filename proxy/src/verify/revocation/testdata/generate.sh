#!/usr/bin/env bash
# Regenerates the OpenSSL-made revocation fixtures: an independent producer
# of OCSP responses and CRLs for verify::revocation's interop test.
# Everything is valid for 100 years from the day it is run; the test checks
# at a fixed time after generation (see OPENSSL_NOW in tests.rs).
# Usage: ./generate.sh (OpenSSL 3), run in this directory.
set -euo pipefail
out=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
days=36500
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }
cat > ext.cnf <<'CNF'
[root]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[intermediate]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
authorityInfoAccess = OCSP;URI:http://ocsp.revocation.test/root
crlDistributionPoints = URI:http://crl.revocation.test/root.crl
[leaf]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = codeSigning
authorityKeyIdentifier = keyid
authorityInfoAccess = OCSP;URI:http://ocsp.revocation.test/intermediate
crlDistributionPoints = URI:http://crl.revocation.test/intermediate.crl
[responder]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = OCSPSigning
noCheck = ignored
CNF
subj="/C=US/ST=WA/L=Seattle/O=Notary"
key root
openssl req -new -x509 -key root.key -subj "$subj/CN=OpenSSL Revocation Root" -days $days \
    -set_serial 1 -extensions root -config <(cat /etc/ssl/openssl.cnf ext.cnf) -out root.pem
issue() { # name, issuer, section, serial, cn
    key "$1"
    openssl req -new -key "$1.key" -subj "$subj/CN=$5" -out "$1.csr"
    openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -set_serial "$4" -days $days \
        -extfile ext.cnf -extensions "$3" -out "$1.pem" 2>/dev/null
}
issue intermediate root intermediate 2 "OpenSSL Revocation Intermediate"
issue leaf intermediate leaf 3 "OpenSSL Revocation Leaf"
issue revoked-leaf intermediate leaf 4 "OpenSSL Revoked Leaf"
issue responder intermediate responder 5 "OpenSSL Revocation OCSP Responder"
subject() { openssl x509 -in "$1.pem" -noout -subject -nameopt compat | sed 's/^subject=//'; }
expiry=$(date -u -d "+$days days" +%y%m%d%H%M%SZ)
revoked_at=$(date -u -d "-1 day" +%y%m%d%H%M%SZ)
printf 'V\t%s\t\t03\tunknown\t%s\n' "$expiry" "$(subject leaf)" > index.txt
printf 'R\t%s\t%s,keyCompromise\t04\tunknown\t%s\n' "$expiry" "$revoked_at" "$(subject revoked-leaf)" >> index.txt
echo 01 > crlnumber
cat > ca.cnf <<CNF
[ca]
default_ca = ca
[ca]
database = index.txt
certificate = intermediate.pem
private_key = intermediate.key
crlnumber = crlnumber
default_md = sha256
default_crl_days = $days
CNF
openssl ca -config ca.cnf -gencrl -out intermediate.crl.pem 2>/dev/null
openssl crl -in intermediate.crl.pem -outform DER -out "$out/intermediate.crl"
ocsp() { # cert, signer, out
    openssl ocsp -issuer intermediate.pem -cert "$1.pem" -no_nonce -reqout "$1.req"
    openssl ocsp -index index.txt -CA intermediate.pem -rsigner "$2.pem" -rkey "$2.key" -rmd sha256 \
        -reqin "$1.req" -ndays $days -respout "$out/$3" 2>/dev/null
}
ocsp leaf intermediate leaf_good_signed_by_issuer.ocsp
ocsp revoked-leaf responder revoked_leaf_signed_by_delegated_responder.ocsp
for c in root intermediate leaf revoked-leaf; do
    openssl x509 -in "$c.pem" -outform DER -out "$out/$c.der"
done
date -u +%Y-%m-%dT%H:%M:%SZ > "$out/GENERATED_AT"
