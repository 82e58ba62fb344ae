"""Debian packages a test needs, installed with apt-get when missing (the suite installs what it
uses; a fresh machine has none of them)."""
import os
import subprocess
import sys

_updated = False


def ensure_packages(*packages, present):
    """Installs `packages` unless `present()` says they are there already."""
    global _updated
    if present():
        return
    print(f"installing {' '.join(packages)} with apt-get ...", file=sys.stderr, flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if not _updated:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        _updated = True
    subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True, env=env)
