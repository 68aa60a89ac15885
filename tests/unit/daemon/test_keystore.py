"""Keystore: 0600 files in a 0700 directory, atomic no-clobber writes, permission refusal."""

from __future__ import annotations

import os
import stat

import pytest
from nacl.pwhash import argon2id

from crowdmesh.crypto.identity import AccountKey
from crowdmesh.crypto.rng import DeterministicRng
from crowdmesh.daemon.keystore import Keystore
from crowdmesh.errors import DecodeError, NotFound, UsageError, ValidationError

FAST = {"opslimit": argon2id.OPSLIMIT_MIN, "memlimit": argon2id.MEMLIMIT_MIN}


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def _code(exc_type, fn, *args, **kwargs):
    with pytest.raises(exc_type) as info:
        fn(*args, **kwargs)
    return info.value.code


@pytest.fixture
def store(tmp_path):
    return Keystore.in_data_dir(tmp_path / "data")


@pytest.fixture
def key():
    return AccountKey.generate(DeterministicRng(42))


def test_save_creates_0600_file_in_0700_dir_and_round_trips(store, key):
    path = store.save("miner", key, b"secret", DeterministicRng(1), **FAST)
    assert path == store.directory / "miner.key"
    assert _mode(path) == 0o600
    assert _mode(store.directory) == 0o700
    assert store.load("miner", b"secret") == key
    assert os.listdir(store.directory) == ["miner.key"]  # no temporary file left behind


def test_plain_key_round_trip(store, key):
    store.save("plain", key, None, DeterministicRng(1))
    assert store.load("plain", None) == key


def test_mode_is_0600_even_under_a_permissive_umask(store, key):
    old = os.umask(0)
    try:
        path = store.save("k", key, None, DeterministicRng(1))
    finally:
        os.umask(old)
    assert _mode(path) == 0o600
    assert _mode(store.directory) == 0o700


def test_existing_loose_directory_is_tightened(tmp_path, key):
    loose = tmp_path / "keys"
    loose.mkdir(mode=0o755)
    os.chmod(loose, 0o755)
    Keystore(loose).save("k", key, None, DeterministicRng(1))
    assert _mode(loose) == 0o700


def test_wrong_and_missing_passphrase(store, key):
    store.save("k", key, b"right", DeterministicRng(1), **FAST)
    assert _code(ValidationError, store.load, "k", b"wrong") == "wrong-passphrase"
    assert _code(UsageError, store.load, "k", None) == "passphrase-required"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o620, 0o644])
def test_group_or_world_access_is_refused(store, key, mode):
    path = store.save("k", key, None, DeterministicRng(1))
    os.chmod(path, mode)
    assert _code(ValidationError, store.load, "k", None) == "key-file-permissions"
    os.chmod(path, 0o600)
    assert store.load("k", None) == key
    os.chmod(path, 0o400)  # owner read-only is fine
    assert store.load("k", None) == key


def test_no_clobber_unless_asked(store, key):
    other = AccountKey.generate(DeterministicRng(7))
    store.save("k", key, None, DeterministicRng(1))
    assert _code(UsageError, store.save, "k", other, None, DeterministicRng(2)) == "key-exists"
    assert store.load("k", None) == key
    store.save("k", other, None, DeterministicRng(2), overwrite=True)
    assert store.load("k", None) == other
    assert sorted(os.listdir(store.directory)) == ["k.key"]


def test_failed_encoding_writes_nothing(store, key):
    assert _code(UsageError, store.save, "k", key, b"", DeterministicRng(1)) == "empty-passphrase"
    assert not (store.directory / "k.key").exists()


@pytest.mark.parametrize("name", ["", ".hidden", "../escape", "a/b", "x" * 65, "trailing.", "é"])
def test_bad_names_are_refused(store, key, name):
    assert _code(UsageError, store.save, name, key, None, DeterministicRng(1)) == "bad-key-name"
    assert _code(UsageError, store.load, name, None) == "bad-key-name"


def test_missing_key(store):
    assert _code(NotFound, store.load, "nope", None) == "key-not-found"


def test_symlink_is_refused(store, key, tmp_path):
    store.save("real", key, None, DeterministicRng(1))
    os.symlink(store.directory / "real.key", store.directory / "link.key")
    assert _code(ValidationError, store.load, "link", None) == "bad-key-file"


def test_damaged_file_is_bad_key_file(store, key):
    path = store.save("k", key, None, DeterministicRng(1))
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))
    assert _code(DecodeError, store.load, "k", None) == "bad-key-file"


def test_list_reports_ids_protection_and_problems(store, key):
    assert store.list_keys() == []
    other = AccountKey.generate(DeterministicRng(7))
    store.save("b-sealed", other, b"pw", DeterministicRng(1), **FAST)
    store.save("a-plain", key, None, DeterministicRng(1))
    loose = store.save("c-loose", key, None, DeterministicRng(1))
    os.chmod(loose, 0o644)
    (store.directory / "notes.txt").write_text("not a key")
    entries = store.list_keys()
    assert [(e.name, e.public, e.encrypted, e.problem) for e in entries] == [
        ("a-plain", key.public, False, None),
        ("b-sealed", other.public, True, None),
        ("c-loose", None, None, "key-file-permissions"),
    ]
