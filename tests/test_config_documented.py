"""Every setting that config.py reads is in luigi.cfg, with a comment; no file names a setting that does not exist."""

from __future__ import annotations

import configparser
import inspect

import luigi
from conftest import REPO

from sendit_luigi import config


def settings() -> dict[str, list[str]]:
    """Section -> parameter names, from the ``luigi.Config`` classes of config.py."""
    out = {}
    for name, cls in vars(config).items():
        if inspect.isclass(cls) and issubclass(cls, config.Section) and cls is not config.Section:
            out[name] = [p for p, _ in cls.get_params()]
    return out


def commented(path, section: str, key: str) -> bool:
    """Whether ``key`` in ``[section]`` of ``path`` has a comment line right above it (or above its block)."""
    lines = path.read_text().splitlines()
    at = lines.index(f"[{section}]")
    for i in range(at + 1, len(lines)):
        if lines[i].startswith("["):
            return False
        if lines[i].split("=")[0].strip() == key:
            j = i - 1
            while j > at and lines[j].strip() and not lines[j].startswith("#"):
                j -= 1  # a key in a block of keys under one comment
            return lines[j].startswith("#")
    return False


def test_every_setting_is_in_luigi_cfg_with_a_comment():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "luigi.cfg")
    missing = [f"[{s}] {k}" for s, keys in settings().items() for k in keys if not cfg.has_option(s, k)]
    assert missing == []
    bare = [f"[{s}] {k}" for s, keys in settings().items() for k in keys if not commented(REPO / "luigi.cfg", s, k)]
    assert bare == []


def test_no_config_file_names_a_setting_that_does_not_exist():
    known = settings()
    for path in (REPO / "luigi.cfg", REPO / "docker" / "luigi.cfg"):
        cfg = configparser.ConfigParser()
        cfg.read(path)
        unknown = [f"{path.name}: [{s}] {k}" for s in cfg.sections() if s in known for k in cfg[s] if k not in known[s]]
        assert unknown == []


def test_the_sections_are_luigi_config_classes():
    assert all(issubclass(getattr(config, s), luigi.Config) for s in settings())
    assert {"sendit", "identifiers", "dasher", "deid", "storage", "upload", "alerts"} <= set(settings())
