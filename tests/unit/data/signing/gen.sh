#!/bin/sh
# gen.sh: regenerates the fixed SSHSIG test vectors used by
# tests/unit/test_signing.c.  Run once with ssh-keygen (OpenSSH 9.x); the
# outputs are committed so the unit tests need neither ssh-keygen nor a
# network.  Ed25519 signatures are deterministic; the RSA/ECDSA ones are not,
# which does not matter (they are only ever refused).
set -eu
cd "$(dirname "$0")"
rm -f signer signer.pub enc enc.pub rsa rsa.pub ecdsa ecdsa.pub other other.pub ./*.sig
ssh-keygen -q -t ed25519 -N '' -C signer@test -f signer
ssh-keygen -q -t ed25519 -N '' -C other@test -f other
ssh-keygen -q -t ed25519 -N 'test passphrase' -C enc@test -f enc
ssh-keygen -q -t rsa -b 2048 -N '' -C rsa@test -f rsa
ssh-keygen -q -t ecdsa -b 256 -N '' -C ecdsa@test -f ecdsa
printf 'a message to sign\n' > msg.txt
ssh-keygen -q -Y sign -f signer -n moonwire-job msg.txt && mv msg.txt.sig msg.sha512.sig
ssh-keygen -q -Y sign -f signer -n moonwire-job -O hashalg=sha256 msg.txt && mv msg.txt.sig msg.sha256.sig
ssh-keygen -q -Y sign -f signer -n file msg.txt && mv msg.txt.sig msg.otherns.sig
ssh-keygen -q -Y sign -f rsa -n moonwire-job msg.txt && mv msg.txt.sig msg.rsa.sig
ssh-keygen -q -Y sign -f ecdsa -n moonwire-job msg.txt && mv msg.txt.sig msg.ecdsa.sig
# A prepared envelope with fixed times, signed by ssh-keygen itself.
printf 'moonwire-job 1\naudience: agent@example.org\njob-id: vector-1\nissued-at: 2030-01-01T00:00:00Z\nnot-after: 2030-01-01T00:05:00Z\nlimits: cpu=500ms instructions=1000000\nprogram-length: 13\n\nreturn 1 + 1\n' > job.prepared
ssh-keygen -q -Y sign -f signer -n moonwire-job job.prepared
ssh-keygen -l -f signer.pub | awk '{print $2}' > signer.fp
