"""Sample batches made from real DICOM files that ship inside PyPI packages.

The sources are pydicom's bundled test files and the ``deid-data`` package.
Each study gets known patient ids, names, accession numbers, dates and fresh
UIDs, so tests can prove that exactly those values are gone from the output.
Nothing here touches the network: only files present on disk are used.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

from . import config
from .tasks import luigi_command


def source_files() -> list[Path]:
    """Small, varied, offline DICOM files (CT, MR, deid-data CT brain and cookies)."""
    import deid_data
    import pydicom.data

    pyd = Path(pydicom.data.__file__).parent / "test_files"
    dd = Path(deid_data.__file__).parent / "data"
    candidates = [
        pyd / "CT_small.dcm",
        pyd / "MR_small.dcm",
        dd / "humans" / "ctbrain1.dcm",
        dd / "dicom-cookies" / "image1.dcm",
        dd / "dicom-cookies" / "image2.dcm",
    ]
    return [p for p in candidates if p.exists()]


@dataclass(frozen=True)
class Study:
    """The identifying values planted in one sample study."""

    folder: str
    patient_id: str
    patient_name: str
    accession: str
    study_date: str
    birth_date: str = "19610805"
    institution: str = "SAMPLE GENERAL HOSPITAL"
    physician: str = "SAMPLE^REFERRING^DOC"

    def phi(self) -> list[str]:
        return [self.patient_id, self.patient_name, self.accession, self.folder, self.institution, self.physician]


def write_study(
    root: Path, study: Study, files: int = 3, sources: list[Path] | None = None, nested: bool = True
) -> Path:
    """Write ``files`` instances of ``study`` into ``root/study.folder``; return the folder."""
    sources = sources or source_files()
    folder = root / study.folder
    folder.mkdir(parents=True, exist_ok=True)
    seed = f"{study.patient_id}/{study.accession}"
    study_uid = generate_uid(entropy_srcs=[seed, "study"])
    for i in range(files):
        source = sources[i % len(sources)]
        ds = pydicom.dcmread(source)
        series = i % len(sources)
        ds.PatientID = study.patient_id
        ds.PatientName = study.patient_name
        ds.AccessionNumber = study.accession
        ds.PatientBirthDate = study.birth_date
        for keyword in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
            setattr(ds, keyword, study.study_date)
        ds.InstitutionName = study.institution
        ds.ReferringPhysicianName = study.physician
        ds.OtherPatientIDs = f"{study.patient_id}-OLD"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = generate_uid(entropy_srcs=[seed, "series", str(series)])
        ds.SOPInstanceUID = generate_uid(entropy_srcs=[seed, "instance", str(i)])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = i + 1
        sub = folder / f"series{series}" if nested and series else folder
        sub.mkdir(exist_ok=True)
        ds.save_as(sub / f"IM{i:04d}", enforce_file_format=True)
    return folder


def demo_studies(count: int = 4) -> list[Study]:
    """``count`` studies; the first two belong to the same patient."""
    studies = []
    for i in range(count):
        patient = 0 if i == 1 else i
        studies.append(
            Study(
                folder=f"ACC{9000 + i:05d}",
                patient_id=f"MRN{700000 + patient}",
                patient_name=f"DEMO^PATIENT{patient}",
                accession=f"ACC{9000 + i:05d}",
                study_date=f"2019{(i % 12) + 1:02d}15",
            )
        )
    return studies


def make_demo(root: Path, count: int = 4, files: int = 4) -> list[Study]:
    """Sample input: ``count`` batch folders of ``files`` files, plus one still being copied."""
    root.mkdir(parents=True, exist_ok=True)
    studies = demo_studies(count)
    for study in studies:
        write_study(root, study, files)
    write_study(root, Study("ACC99999.tmp", "MRN799999", "COPYING^STILL", "ACC99999", "20200101"), 1)
    return studies


def write_samples(folder: Path, batches: int = 4, files: int = 4) -> int:
    """``python -m sendit_luigi sample-data``: sample batch folders, and say where."""
    made = make_demo(folder, batches, files)
    print(f"wrote {len(made)} sample batches to {folder.absolute()}")
    return 0


# -- the demo: sample data, a config with the embedded backends, one run -------------------


def demo_cfg(root: Path) -> str:
    """The demo's luigi.cfg: the embedded backends, everything under ``root``."""
    return config.render_cfg(
        {
            "sendit": {"input_folders": f"{root}/input", "work_dir": f"{root}/work"},
            "identifiers": {"backend": "local"},
            "storage": {"backend": "local", "local_root": f"{root}/bucket", "collection": "DEMO"},
            "upload": {"workers": "10"},
        }
    )


def run_demo(folder: Path, batches: int = 4, workers: int = 2) -> int:
    """Make sample data, run ProcessAll on it with the embedded defaults, say where things are."""
    root = folder.absolute()
    studies = make_demo(root / "input", batches)
    cfg = root / "luigi.cfg"
    cfg.write_text(demo_cfg(root))
    print(f"sample input: {len(studies)} batch folders (+1 still copying) in {root / 'input'}", flush=True)
    env = dict(os.environ, LUIGI_CONFIG_PATH=str(cfg))
    command = luigi_command("ProcessAll", "--local-scheduler", "--workers", str(workers), "--log-level", "WARNING")
    code = subprocess.call(command, env=env, cwd=root)  # cwd: no stray ./luigi.cfg
    print()
    print(f"config:      {cfg}")
    print(f"tarballs:    {root / 'bucket' / 'Collection'}")
    for tarball in sorted((root / "bucket").rglob("*.tar.gz")):
        print(f"             {tarball.relative_to(root / 'bucket')}")
    print(f"rows:        {root / 'bucket' / 'metadata.sqlite'} (table dicom)")
    print(f"metrics:     {root / 'work' / 'metrics.csv'}")
    print(f"status:      LUIGI_CONFIG_PATH={cfg} {sys.executable} -m sendit_luigi status")
    return code
