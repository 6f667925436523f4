"""Key files: created on first start with mode 0600 in a 0700 directory, never overwritten."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def _write_new(path: Path, data: bytes) -> bool:
    """Create ``path`` with ``data`` at mode 0600; False if another process made it first."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return True


def _check_private(path: Path) -> None:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise PermissionError(f"{path} is readable by others (mode {mode:o}); chmod 600 it")


def load_or_create_signing_key(path: Path) -> Ed25519PrivateKey:
    """Load the Ed25519 log signing key, generating it on first start."""
    if not path.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_new(path, pem)
    _check_private(path)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 private key")
    return key


def load_or_create_secret(path: Path, size: int = 32) -> bytes:
    """Load a random secret key file, generating it on first start."""
    if not path.exists():
        _write_new(path, secrets.token_bytes(size))
    _check_private(path)
    data = path.read_bytes()
    if len(data) != size:
        raise ValueError(f"{path} must hold exactly {size} bytes")
    return data
