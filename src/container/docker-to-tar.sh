#!/usr/bin/env bash
# Stands in for the `docker` executable during a Jib build (quarkus.jib.docker-executable-name), so the
# image is written to a tarball instead of a Docker engine: `load` saves stdin to $QBLK_IMAGE_TAR
# (default target/qblk-image.tar), `info` describes a linux/amd64 engine.
set -euo pipefail
case "${1:-}" in
  load)
    out="${QBLK_IMAGE_TAR:-target/qblk-image.tar}"
    cat >"$out"
    echo "Loaded image: qblk (saved to $out)" ;;
  info)
    echo '{"OSType":"linux","Architecture":"x86_64"}' ;;
  *)
    echo "docker-to-tar: unsupported command: $*" >&2; exit 1 ;;
esac
