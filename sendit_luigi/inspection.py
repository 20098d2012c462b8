"""What the recipe will do to a batch, element by element, with every value redacted.

``python -m sendit_luigi inspect <batch folder>`` prints, for a sample file, each
header element with its action (keep, remove, blank, replace with what kind of
value, shift), and lists the files the recipe's filters would quarantine.
"""

from __future__ import annotations

from pathlib import Path

from pydicom.dataset import Dataset

from .deidentify import Recipe
from .inputs import read_dicom, walk_files

KINDS = {
    "var:patient_id": "the coded patient id",
    "var:accession": "the coded accession number",
    "func:remap_uid": "a keyed-hash UID (standard UIDs kept)",
}


PROFILE_WORDS = {
    "remove": "remove (profile X)",
    "blank": "empty (profile Z)",
    "dummy": "dummy value (profile D)",
    "remap": "new consistent UID (profile U)",
    "shift": "shift by the patient's date shift (option)",
    "clean": "keep, cleaned of identifying values (option)",
}


def describe_action(action: str, value: str | None) -> str:
    if action in PROFILE_WORDS:
        return PROFILE_WORDS[action]
    if action == "REMOVE":
        return "remove (recipe)"
    if action == "BLANK":
        return "blank (recipe)"
    if action == "JITTER":
        return "shift by the patient's date shift (recipe)"
    if action == "REPLACE":
        return "replace with " + KINDS.get(value or "", f"'{value}'")
    return action.lower()


def placeholder(elem) -> str:
    if elem.VR == "SQ":
        return f"<sequence, {len(elem.value)} items>"
    value = elem.value
    size = len(value) if isinstance(value, (bytes, str)) else len(str(value))
    return f"<{elem.VR}, {size} {'bytes' if isinstance(value, bytes) else 'characters'}>"


def elements(ds: Dataset, prefix: tuple = ()):
    """(path, depth, element) for every element, sequences opened."""
    for elem in ds:
        path = prefix + (elem.tag,)
        yield path, len(prefix) // 2, elem
        if elem.VR == "SQ":
            for i, item in enumerate(elem.value):
                yield from elements(item, path + (i,))


def inspect(folder: Path, recipe: Recipe) -> str:
    files = list(walk_files(folder))
    sample, lines = None, []
    for path in files:
        try:
            sample = read_dicom(path, [])[0]
            break
        except Exception:  # noqa: BLE001 - not a readable DICOM file: try the next
            continue
    if sample is None:
        return f"no readable DICOM file among the {len(files)} files of this folder"
    profile = recipe.profile
    lines.append(f"profile: DICOM PS3.15 {profile.edition} Basic Application Level Confidentiality Profile")
    lines.append(f"options in force: {', '.join(sorted(profile.options)) or 'none'}")
    lines.append(f"recipe: {recipe.name}, hash {recipe.hash}")
    lines.append(f"sample file {files.index(path) + 1} of {len(files)}; values are redacted")
    before = list(elements(sample))
    private = {p for p, _, e in before if e.tag.is_private}
    ops = {p: (a, v) for p, a, v in recipe.plan(sample)}  # removes private elements on the way
    allowed = {p for p, _, _ in elements(sample)} & private
    gone: list[tuple] = []
    for path, depth, elem in before:
        indent = "  " * depth
        if any(path[: len(g)] == g for g in gone):
            action = "removed with its sequence"
        elif path in private:
            action = "keep (allowed private block)" if path in allowed else "remove (private tag)"
        elif path in ops:
            action = describe_action(*ops[path])
            if ops[path][0] in ("REMOVE", "BLANK", "remove", "blank") or elem.VR == "SQ":
                gone.append(path)
        else:
            action = "keep"
        name = elem.keyword or "(private)"
        lines.append(f"{indent}{elem.tag} {name:<36} {elem.VR:<2} {action:<44} {placeholder(elem)}")
    for add in recipe.additions:
        lines.append(f"add {add['field']} = {add.get('value')!r}")
    lines.append("added: PatientIdentityRemoved, DeidentificationMethod, DeidentificationMethodCodeSequence "
                 "(the profile and each option in force), LongitudinalTemporalInformationModified")
    lines.append("file meta: rebuilt (MediaStorageSOPInstanceUID follows the new SOPInstanceUID)")
    flagged = []
    for number, path in enumerate(files, start=1):
        try:
            reason = recipe.quarantine_reason(read_dicom(path, [])[0])
        except Exception:  # noqa: BLE001 - not readable: not quarantined either
            continue
        if reason:
            flagged.append(f"  file {number}: {reason}")
    lines.append(f"quarantine: {len(flagged)} of {len(files)} files" + (":" if flagged else ""))
    lines += flagged
    return "\n".join(lines)
