"""Helpers that drive the real clients (skopeo, docker, notary, containerd) and make their inputs
(throwaway TLS certificates, a reproducible test image) for the end-to-end tests, the benchmarks
and scripts/gen-notary-vectors.py. Everything here lives in the repository."""
