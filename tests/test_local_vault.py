"""The embedded identifiers backend: a pseudonym vault with a lookup table."""

from __future__ import annotations

import pytest

from sendit_luigi.errors import BatchError
from sendit_luigi.identifiers.local import Vault, jitter_from
from sendit_luigi.workdir import Keyed, load_secret


def test_the_same_patient_gets_the_same_codes_in_every_session(tmp_path):
    key = load_secret(tmp_path / "secret.key")
    first = Vault(tmp_path / "v.sqlite", Keyed(key), 30)
    a = first.patient("MRN1")
    first.close()
    second = Vault(tmp_path / "v.sqlite", Keyed(load_secret(tmp_path / "secret.key")), 30)
    assert second.patient("MRN1") == a
    assert second.patient("MRN2") != a


def test_the_table_wins_over_a_new_secret(tmp_path):
    vault = Vault(tmp_path / "v.sqlite", Keyed(b"a" * 64), 30)
    before = vault.patient("MRN1")
    vault.close()
    assert Vault(tmp_path / "v.sqlite", Keyed(b"b" * 64), 30).patient("MRN1") == before


def test_an_accession_seen_for_another_patient_is_an_error(tmp_path):
    vault = Vault(tmp_path / "v.sqlite", Keyed(b"a" * 64), 30)
    vault.study("ACC1", "MRN1", "k1")
    assert vault.study("ACC1", "MRN1", "k1") == vault.study("ACC1", "MRN1", "k2")
    with pytest.raises(BatchError, match="different patient"):
        vault.study("ACC1", "MRN2", "k3")


def test_jitter_is_within_bounds_and_never_zero():
    shifts = {jitter_from(n, 5) for n in range(1000)}
    assert shifts == {-5, -4, -3, -2, -1, 1, 2, 3, 4, 5}


def test_the_secret_and_table_are_private(tmp_path):
    load_secret(tmp_path / "s" / "secret.key")
    Vault(tmp_path / "s" / "v.sqlite", Keyed(b"a" * 64), 30).close()
    for name in ("secret.key", "v.sqlite"):
        assert (tmp_path / "s" / name).stat().st_mode & 0o077 == 0
    assert (tmp_path / "s").stat().st_mode & 0o077 == 0


def _open_and_use(path: str) -> str:
    from pathlib import Path

    vault = Vault(Path(path), Keyed(b"c" * 64), 30)
    try:
        return vault.patient("MRN1")[0]
    finally:
        vault.close()


def test_several_processes_opening_a_new_vault_at_once_all_succeed(tmp_path):
    """Seen in CI: 'database is locked' from PRAGMA journal_mode=WAL when workers open a new vault together."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    with context.Pool(6) as pool:
        for trial in range(25):
            path = str(tmp_path / f"v{trial}.sqlite")
            codes = pool.map(_open_and_use, [path] * 6)
            assert len(set(codes)) == 1
