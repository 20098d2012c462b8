"""Settings, one ``luigi.Config`` class per ``luigi.cfg`` section.

Luigi reads ``luigi.cfg`` from the working directory, or the file named by
``LUIGI_CONFIG_PATH``. Every setting has a default so that the package imports
without a config file; ``luigi.cfg`` at the top of the repository documents
them all.

The class names are the section names (``[sendit]``, ``[identifiers]`` ...),
which is how Luigi maps a section to a ``Config`` class.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any

import luigi
import luigi.configuration


class Section(luigi.Config):
    """A ``luigi.cfg`` section, read once per process through ``get()``.

    Luigi re-reads every parameter from the config parser each time a Config
    is instantiated; at tens of thousands of batches that was most of the
    scheduling time.
    """

    _loaded: dict = {}

    @classmethod
    def get(cls) -> Any:
        if cls not in Section._loaded:
            Section._loaded[cls] = cls()
        return Section._loaded[cls]


class alerts(Section):  # noqa: N801
    """Who is told when a task fails or a batch ends in error (mail goes out through Luigi's [email]/[smtp])."""

    receiver = luigi.Parameter(default="", description="Comma-separated e-mail addresses. Empty: no alerts.")
    on_batch_error = luigi.BoolParameter(default=True, description="Also alert when a batch ends in error.")

    def recipients(self) -> list[str]:
        return list(split(self.receiver))


# Luigi's own settings that every configuration of this project carries; luigi.cfg documents each.
LUIGI_SETTINGS: dict[str, dict[str, str]] = {
    "core": {"autoload_range": "false", "log_level": "INFO"},
    "execution_summary": {"summary_length": "0"},
    "worker": {"keep_alive": "false", "check_unfulfilled_deps": "false"},
    "retcode": {
        "already_running": "10",
        "missing_data": "20",
        "not_run": "0",
        "task_failed": "30",
        "scheduling_error": "35",
        "unhandled_exception": "40",
    },
}


def render_cfg(settings: dict[str, dict[str, str]]) -> str:
    """The text of a luigi.cfg: ``settings`` (section -> key -> value) over ``LUIGI_SETTINGS``.

    The one writer of configuration files: the demo, the tests and the benchmarks use it.
    """
    sections = {name: dict(values) for name, values in LUIGI_SETTINGS.items()}
    for name, values in settings.items():
        sections.setdefault(name, {}).update({k: str(v) for k, v in values.items()})
    return "".join(
        f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()) + "\n" for name, values in sections.items()
    )


def reset() -> None:
    """Forget the settings read so far (tests that switch configs in one process)."""
    Section._loaded.clear()


class sendit(Section):  # noqa: N801 - Luigi maps the class name to [sendit]
    """Where batches come from and where the pipeline keeps its checkpoints."""

    input_folders = luigi.Parameter(
        default="",
        description="Comma-separated folders; every sub-folder of each is one batch (one study).",
    )
    work_dir = luigi.Parameter(
        default="work",
        description="Checkpoints, the secret key and the lookup tables. Holds PHI: keep it private.",
    )
    secret_file = luigi.Parameter(
        default="",
        description="HMAC key for batch keys, coded ids and UIDs. Default: <work_dir>/secret.key.",
    )
    recipe = luigi.Parameter(
        default="",
        description="deid recipe file. Default: the recipe shipped in sendit_luigi/recipes/.",
    )
    group_size = luigi.IntParameter(
        default=20,
        description="At most this many batches run inside one Luigi task run (Luigi batching).",
    )
    chunk_size = luigi.IntParameter(
        default=500,
        description="Batches a ProcessChunk task hands to the scheduler at a time (Luigi dynamic dependencies).",
    )
    compress_level = luigi.IntParameter(
        default=1,
        description="gzip level of study tarballs, 0-3 (ISA-L): 1 is fast, 3 is a little smaller.",
    )
    min_free_gb = luigi.FloatParameter(
        default=0.0,
        description="A batch does not start if the work disk would drop below this many GB free (0: no check).",
    )
    study_id_from = luigi.ChoiceParameter(
        choices=["accession", "study_uid", "accession_then_study_uid"],
        default="accession_then_study_uid",
        description="What the coded study id is made from: AccessionNumber, StudyInstanceUID, or the first if present.",
    )
    patient_id_from = luigi.ChoiceParameter(
        choices=["patient_id", "patient_id_then_study"],
        default="patient_id",
        description="Without PatientID: an error, or (patient_id_then_study) the study stands for its own patient.",
    )
    remove_after_upload = luigi.BoolParameter(
        default=False,
        description="Free a batch's work copy (tarball, headers, identifiers) once it is uploaded.",
    )
    fail_on_batch_errors = luigi.BoolParameter(
        default=False,
        description="Exit non-zero when a batch ended in error during the run (for cron and CI).",
    )
    ready_file = luigi.Parameter(
        default="",
        description="If set, only batches whose keys are listed in this JSON file are processed (watch mode).",
    )
    skip_suffixes = luigi.Parameter(
        default=".tmp,part",
        description="Batch folders whose names end with one of these are still being copied.",
    )

    def input_paths(self) -> list[Path]:
        return [Path(p).expanduser() for p in split(self.input_folders)]

    def input_roots(self) -> list[Path]:
        """The input folders with links resolved: nothing outside them is ever read."""
        return [Path(os.path.realpath(p)) for p in self.input_paths()]

    def work_path(self) -> Path:
        return Path(self.work_dir).expanduser().absolute()

    def secret_path(self) -> Path:
        return Path(self.secret_file).expanduser() if self.secret_file else self.work_path() / "secret.key"

    def recipe_path(self) -> Path:
        if self.recipe:
            return Path(self.recipe).expanduser()
        return Path(__file__).parent / "recipes" / "sendit.dicom"

    def suffixes(self) -> tuple[str, ...]:
        return split(self.skip_suffixes)


def backends(package: str) -> list[str]:
    """The backends of ``identifiers`` or ``storage``: one module each in that package's folder.

    A new backend is one new module there (plus a section for its own settings): the
    setting's allowed values follow from the folder, without importing anything.
    """
    folder = Path(__file__).parent / package
    return sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))


class identifiers(Section):  # noqa: N801
    """Which service hands out coded patient/study ids and date shifts."""

    backend = luigi.ChoiceParameter(choices=backends("identifiers"), default="local")
    vault = luigi.Parameter(
        default="",
        description="local backend: SQLite lookup table. Default: <work_dir>/vault.sqlite.",
    )
    max_jitter_days = luigi.IntParameter(
        default=30,
        description="local backend: dates shift by a per-patient number of days in [-N, N], never 0.",
    )

    def vault_path(self) -> Path:
        return Path(self.vault).expanduser() if self.vault else sendit.get().work_path() / "vault.sqlite"


class dasher(Section):  # noqa: N801 - Luigi maps the class name to [dasher]
    """``[dasher]``: where DASHER is and how hard to try."""

    base_url = luigi.Parameter(default="https://api.rit.stanford.edu/identifiers/api")
    study = luigi.Parameter(default="test", description="DASHER study (lowercased in the URL).")
    secrets_file = luigi.Parameter(
        default="",
        description="som's secrets JSON (accessToken, refreshToken, token_uri). Default: $STANFORD_CLIENT_SECRETS.",
    )
    timeout = luigi.FloatParameter(default=30.0, description="Seconds to wait for one reply.")
    retries = luigi.IntParameter(default=4, description="Extra attempts after a 5xx, timeout or dropped connection.")
    backoff = luigi.FloatParameter(default=1.0, description="First wait between attempts; doubles each time.")


DEFAULT_TABLE = Path(__file__).parent / "deidentify" / "tables" / "ps315_2026d.json"
# Technical descriptors kept (cleaned of the batch's identifying values) under the Clean
# Descriptors option; every other descriptor is handled as the profile says (mostly removed).
DESCRIPTORS = (
    "StudyDescription,SeriesDescription,ProtocolName,PerformedProcedureStepDescription,"
    "RequestedProcedureDescription,ScheduledProcedureStepDescription,AcquisitionDeviceProcessingDescription,"
    "DerivationDescription,ContrastBolusAgent,RequestedContrastAgent,ROIName,ROIObservationLabel,"
    "StructureSetLabel,RTPlanLabel,RTPlanName"
)


# The PS3.15 options in force unless luigi.cfg says otherwise (the table's option column names).
PROFILE_OPTIONS = "retain_longitudinal_modified_dates,retain_patient_characteristics,clean_descriptors"


def split(text: str) -> tuple[str, ...]:
    """A comma-separated setting as its non-empty, stripped parts."""
    return tuple(s.strip() for s in text.split(",") if s.strip())


class deid(Section):  # noqa: N801
    """De-identification details that are not per-tag policy (that lives in the recipe)."""

    uid_root = luigi.Parameter(
        default="2.25.",
        description="Root of remapped UIDs. 2.25. makes UUID-derived UIDs that need no registered root.",
    )
    keep_private_creators = luigi.Parameter(
        default="",
        description="Comma-separated private creator names whose private blocks are kept. Empty: all private tags go.",
    )

    quarantine_filters = luigi.Parameter(
        default="burned_in",
        description="Comma-separated %filter sections of the recipe to apply; a flagged file is quarantined.",
    )
    profile_table = luigi.Parameter(
        default="",
        description="DICOM PS3.15 Table E.1-1 as data. Default: the edition in sendit_luigi/deidentify/tables/.",
    )
    profile_options = luigi.Parameter(
        default=PROFILE_OPTIONS,
        description="Comma-separated PS3.15 options in force (the table's option columns); the others are off.",
    )
    clean_descriptors = luigi.Parameter(
        default=DESCRIPTORS,
        description="With the clean_descriptors option: the descriptors kept after cleaning (DICOM keywords).",
    )

    def filters(self) -> tuple[str, ...]:
        return split(self.quarantine_filters)

    def private_allow(self) -> frozenset[str]:
        return frozenset(split(self.keep_private_creators))

    def options(self) -> frozenset[str]:
        return frozenset(split(self.profile_options))

    def descriptors(self) -> frozenset[str]:
        return frozenset(split(self.clean_descriptors))

    def table_path(self) -> Path:
        if self.profile_table:
            return Path(self.profile_table).expanduser()
        return DEFAULT_TABLE


class storage(Section):  # noqa: N801
    """Where finished studies go."""

    backend = luigi.ChoiceParameter(choices=backends("storage"), default="local")
    local_root = luigi.Parameter(
        default="bucket",
        description="local backend: a folder laid out like the bucket, plus metadata.sqlite.",
    )
    local_mode = luigi.Parameter(
        default="700",
        description="local backend: the bucket's folder permissions (octal; files get them without execute). "
        "700: only the owner reads the studies and the table; 755: every local user can.",
    )
    collection = luigi.Parameter(
        default="sendit",
        description="The IRB/study id: Collection/<collection>/... in object names (and the BigQuery dataset).",
    )

    # --- backend = gcs ---------------------------------------------------
    bucket = luigi.Parameter(default="", description="gcs: the bucket for study tarballs.")
    project = luigi.Parameter(default="", description="gcs: Google Cloud project (for BigQuery and new buckets).")
    dataset = luigi.Parameter(default="", description="gcs: BigQuery dataset. Default: the collection.")
    table = luigi.Parameter(default="dicom", description="gcs: BigQuery table for the metadata rows.")
    location = luigi.Parameter(default="US", description="gcs: BigQuery dataset location, when it is created.")
    gcs_endpoint = luigi.Parameter(
        default="", description="gcs: GCS API endpoint (an emulator or private endpoint). Also: STORAGE_EMULATOR_HOST."
    )
    bigquery_endpoint = luigi.Parameter(default="", description="gcs: BigQuery API endpoint (an emulator).")
    credentials = luigi.ChoiceParameter(
        choices=["default", "anonymous"],
        default="default",
        description="gcs: 'default' = Application Default Credentials / GOOGLE_APPLICATION_CREDENTIALS; "
        "'anonymous' only for emulators.",
    )
    retry_seconds = luigi.FloatParameter(default=120.0, description="gcs: give up retrying a call after this long.")
    backoff = luigi.FloatParameter(default=1.0, description="gcs: first wait between retries; doubles each time.")

    def local_modes(self) -> tuple[int, int]:
        """The local bucket's folder mode and file mode (the folder mode without execute bits)."""
        try:
            folders = int(self.local_mode, 8)
        except ValueError:
            raise ValueError(
                f"[storage] local_mode must be octal permissions such as 700, not {self.local_mode!r}"
            ) from None
        if not 0o700 <= folders <= 0o777 or folders & 0o700 != 0o700:
            raise ValueError("[storage] local_mode must leave the owner all rights (700 to 777)")
        return folders, folders & 0o666

    def local_path(self) -> Path:
        return Path(self.local_root).expanduser().absolute()

    def dataset_name(self) -> str:
        return self.dataset or self.collection


class upload(Section):  # noqa: N801
    """How the upload step is split."""

    workers = luigi.IntParameter(
        default=10,
        description="The upload is split into this many shard tasks, run in parallel by Luigi workers.",
    )
    rows_per_request = luigi.IntParameter(
        default=100,
        description="Metadata rows sent in one insert (one BigQuery lookup and one streaming insert per this many).",
    )
    threads = luigi.IntParameter(
        default=8,
        description="Tarballs a shard sends at once (uploading waits on the network, not the CPU).",
    )


# -- checking the settings before any work ------------------------------------------------


class SettingsError(ValueError):
    """A setting is misspelt, out of range or unsafe; the message names it and what to do."""


RANGES = {  # (section, key): (lowest, highest or None)
    ("sendit", "group_size"): (1, None),
    ("sendit", "chunk_size"): (1, None),
    ("upload", "threads"): (1, 64),
    ("sendit", "compress_level"): (0, 3),
    ("sendit", "min_free_gb"): (0, None),
    ("identifiers", "max_jitter_days"): (1, 3650),
    ("dasher", "timeout"): (1, None),
    ("dasher", "retries"): (0, 100),
    ("storage", "retry_seconds"): (1, None),
    ("upload", "workers"): (1, None),
    ("upload", "rows_per_request"): (1, 10000),
}
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def sections() -> dict[str, type[Section]]:
    """This project's ``luigi.cfg`` sections and their classes."""
    return {
        name: cls
        for name, cls in globals().items()
        if isinstance(cls, type) and issubclass(cls, Section) and cls is not Section
    }


def validate() -> None:
    """Raise ``SettingsError`` for the first setting that would make a run wrong or unsafe.

    Misspelt sections and keys (they would silently fall back to defaults), values
    out of range, a collection name that is not one path segment, and a work
    folder or local bucket inside an input folder (the next run would read the
    pipeline's own files, which hold PHI, as a batch).
    """
    parser = luigi.configuration.get_config()
    ours = sections()
    for section in parser.sections():
        if section not in ours:
            near = difflib.get_close_matches(section, ours, n=1, cutoff=0.75)
            if near:
                raise SettingsError(f"luigi.cfg has a section [{section}]; did you mean [{near[0]}]?")
            continue
        known = [name for name, _ in ours[section].get_params()]
        for key in parser[section]:
            if key not in known and key not in parser.defaults():
                near = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                hint = f"; did you mean {near[0]}?" if near else f"; known: {', '.join(known)}"
                raise SettingsError(f"[{section}] {key} is not a setting{hint}")
    for (section, key), (low, high) in RANGES.items():
        value = getattr(ours[section].get(), key)
        if value < low or (high is not None and value > high):
            raise SettingsError(f"[{section}] {key} = {value} is out of range ({low} to {high or 'any'})")
    cfg = sendit.get()
    name = storage.get().collection
    if not SAFE_NAME.fullmatch(name) or name in (".", ".."):
        raise SettingsError("[storage] collection must be one name of letters, digits, '.', '_' or '-'")
    inputs = cfg.input_roots()
    places = {"[sendit] work_dir": Path(os.path.realpath(cfg.work_path()))}
    if storage.get().backend == "local":
        places["[storage] local_root"] = Path(os.path.realpath(storage.get().local_path()))
    for label, place in places.items():
        for root in inputs:
            if place == root or root in place.parents or place in root.parents:
                raise SettingsError(
                    f"{label} and an input folder ([sendit] input_folders) overlap; "
                    "keep the pipeline's own files outside the input folders"
                )
