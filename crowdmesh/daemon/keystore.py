"""Account key files on disk: ``<data_dir>/keys/<name>.key``, written atomically with mode 0600.

The bytes are the pure core's key-file format (``crowdmesh.crypto.identity``); this module only
adds the file system rules.

Invariants:
- The key directory is mode 0700 and every key file mode 0600 from the moment it exists: the
  temporary file is created with ``O_CREAT | O_EXCL`` and mode 0600 (then ``fchmod`` in case the
  umask took bits away), written, fsynced, and only then linked to its final name, so a reader
  never sees a partial file and a crash leaves either the old state or the complete new file.
- ``save`` never replaces an existing key (``key-exists``) unless asked to.
- ``load`` refuses a key file that the group or others can read or write
  (``key-file-permissions``), a symlink, or anything that is not a small regular file.
- Key names are ``[A-Za-z0-9_-]`` (1-64 chars, optionally with inner dots), so a name can never
  escape the directory.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from crowdmesh.crypto.identity import (
    DEFAULT_MEMLIMIT,
    DEFAULT_OPSLIMIT,
    MAX_KEY_FILE_SIZE,
    AccountKey,
    decode_account_key,
    encode_account_key,
    inspect_account_key,
)
from crowdmesh.crypto.rng import Rng
from crowdmesh.errors import CrowdmeshError, NotFound, UsageError, ValidationError

__all__ = ["DIR_MODE", "ELGAMAL_SUFFIX", "FILE_MODE", "KEYS_DIR", "KeyEntry", "Keystore"]

KEYS_DIR = "keys"
KEY_SUFFIX = ".key"
ELGAMAL_SUFFIX = ".elgamal"  # <profile>.elgamal: an ElGamal secret exponent
_ELGAMAL_MAGIC = b"crowdmesh-elgamal-v1 "
DIR_MODE = 0o700
FILE_MODE = 0o600
_NAME = re.compile(r"[A-Za-z0-9_-]([A-Za-z0-9_.-]{0,62}[A-Za-z0-9_-])?")
_OPEN_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """One key file as ``list`` sees it; ``problem`` is an error code when it cannot be used."""

    name: str
    public: bytes | None
    encrypted: bool | None
    problem: str | None = None


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise UsageError("bad-key-name", f"{name!r}: use 1-64 of A-Z a-z 0-9 _ - .")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_new(path: Path, data: bytes) -> None:
    """Create ``path`` (mode 0600, must not exist) holding ``data``, fsynced."""
    fd = os.open(path, _OPEN_NEW, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # why: the umask may have removed bits; never added any
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_private(path: Path) -> bytes:
    """Read a key file after checking it is a small regular file only its owner can access."""
    try:
        fd = os.open(path, _OPEN_READ)
    except FileNotFoundError as exc:
        raise NotFound("key-not-found", str(path)) from exc
    except OSError as exc:  # ELOOP: O_NOFOLLOW met a symlink
        raise ValidationError("bad-key-file", f"{path}: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_KEY_FILE_SIZE:
            raise ValidationError("bad-key-file", f"{path}: not a key file")
        if st.st_mode & 0o077:
            raise ValidationError(
                "key-file-permissions",
                f"{path} has mode {stat.S_IMODE(st.st_mode):04o}; run chmod 600 on it",
            )
        return os.read(fd, MAX_KEY_FILE_SIZE + 1)
    finally:
        os.close(fd)


class Keystore:
    """Account key files in one directory (conventionally ``<data_dir>/keys``)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> Keystore:
        """The node's keystore, ``<data_dir>/keys``."""
        return cls(Path(data_dir) / KEYS_DIR)

    def path(self, name: str) -> Path:
        """Where key ``name`` lives (the name is validated)."""
        _check_name(name)
        return self.directory / f"{name}{KEY_SUFFIX}"

    def _ensure_directory(self) -> None:
        self.directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        # why: mkdir's mode is filtered by the umask and an existing directory keeps its mode
        os.chmod(self.directory, DIR_MODE)

    def save(
        self,
        name: str,
        key: AccountKey,
        passphrase: bytes | None,
        rng: Rng,
        *,
        overwrite: bool = False,
        opslimit: int = DEFAULT_OPSLIMIT,
        memlimit: int = DEFAULT_MEMLIMIT,
    ) -> Path:
        """Write ``key`` as ``<name>.key`` (encrypted when a passphrase is given); return its path.

        Raises:
            UsageError: ``bad-key-name``, ``key-exists`` (without ``overwrite``), or the
                encoder's ``empty-passphrase`` / ``bad-kdf-limits``.
        """
        final = self.path(name)
        blob = encode_account_key(key, passphrase, rng, opslimit=opslimit, memlimit=memlimit)
        self._ensure_directory()
        tmp = self.directory / f".{name}.{secrets.token_hex(8)}.tmp"
        _write_new(tmp, blob)
        try:
            self._publish(tmp, final, overwrite)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        _fsync_dir(self.directory)
        return final

    @staticmethod
    def _publish(tmp: Path, final: Path, overwrite: bool) -> None:
        if overwrite:
            os.replace(tmp, final)
            return
        try:
            os.link(tmp, final)  # atomic and refuses to clobber, unlike rename
        except FileExistsError as exc:
            raise UsageError("key-exists", f"{final} already exists") from exc

    def load(self, name: str, passphrase: bytes | None) -> AccountKey:
        """Read and decode ``<name>.key``.

        Raises:
            NotFound: ``key-not-found``.
            ValidationError: ``key-file-permissions`` (group/world access), ``bad-key-file``
                (symlink, not a regular file), ``wrong-passphrase``.
            DecodeError: ``bad-key-file`` for damaged contents.
            UsageError: ``passphrase-required``.
        """
        return decode_account_key(_read_private(self.path(name)), passphrase)

    def list_keys(self) -> list[KeyEntry]:
        """Every ``*.key`` file, sorted by name, with its account id if it can be read."""
        if not self.directory.is_dir():
            return []
        names = sorted(p.name[: -len(KEY_SUFFIX)] for p in self.directory.glob(f"*{KEY_SUFFIX}"))
        return [self._entry(name) for name in names if _NAME.fullmatch(name)]

    def _entry(self, name: str) -> KeyEntry:
        try:
            info = inspect_account_key(_read_private(self.path(name)))
        except CrowdmeshError as exc:
            return KeyEntry(name, None, None, exc.code)
        return KeyEntry(name, info.public, info.encrypted)

    # -- ElGamal secrets (CrowdSFL requester and CSP) --------------------------------------

    def elgamal_path(self, profile: str) -> Path:
        """Where the ElGamal secret of crypto profile ``profile`` lives."""
        _check_name(profile)
        return self.directory / f"{profile}{ELGAMAL_SUFFIX}"

    def elgamal_secret(self, profile: str, make: Callable[[], int]) -> int:
        """The ElGamal secret exponent of ``profile``; created with ``make()`` on first use.

        The file (mode 0600, same rules as account keys) holds one line
        ``crowdmesh-elgamal-v1 <hex exponent>``; it is never replaced.

        Raises:
            ValidationError: ``key-file-permissions``, ``bad-key-file``.
        """
        path = self.elgamal_path(profile)
        try:
            raw = _read_private(path)
        except NotFound:
            self._ensure_directory()
            try:
                _write_new(path, _ELGAMAL_MAGIC + f"{make():x}\n".encode())
            except FileExistsError:
                pass  # why: another process made it first; read theirs
            else:
                _fsync_dir(self.directory)
            raw = _read_private(path)
        if not raw.startswith(_ELGAMAL_MAGIC):
            raise ValidationError("bad-key-file", f"{path}: not an ElGamal key file")
        try:
            return int(raw[len(_ELGAMAL_MAGIC):].strip(), 16)
        except ValueError:
            raise ValidationError("bad-key-file", f"{path}: damaged ElGamal key") from None
