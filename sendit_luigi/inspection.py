"""What the recipe will do to a batch, element by element, with every value redacted.

``python -m sendit_luigi inspect <batch folder>`` prints, for a sample file, each
header element with its action (keep, remove, blank, replace with what kind of
value, shift), and lists the files the recipe's filters would quarantine.
"""

from __future__ import annotations

from pathlib import Path

from pydicom.dataelem import DataElement

from .deidentify import Recipe
from .deidentify.walk import elements
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


def placeholder(elem: DataElement) -> str:
    if elem.VR == "SQ":
        return f"<sequence, {len(elem.value)} items>"
    value = elem.value
    size = len(value) if isinstance(value, (bytes, str)) else len(str(value))
    return f"<{elem.VR}, {size} {'bytes' if isinstance(value, bytes) else 'characters'}>"


def inspect(folder: Path, recipe: Recipe) -> str:
    files = list(walk_files(folder))
    sample, lines = None, []
    for path in files:
        try:
            sample = read_dicom(path, [])[0]
            before = elements(sample)  # raises past the nesting bound, as the pipeline does
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
    private = {p for p, _, e in before if e.tag.is_private}
    ops = {p: (a, v) for p, a, v in recipe.plan(sample)}  # removes private elements on the way
    allowed = {p for p, _, _ in elements(sample)} & private
    gone: list[tuple] = []
    for where, depth, elem in before:
        indent = "  " * depth
        if any(where[: len(g)] == g for g in gone):
            action = "removed with its sequence"
        elif where in private:
            action = "keep (allowed private block)" if where in allowed else "remove (private tag)"
        elif where in ops:
            action = describe_action(*ops[where])
            if ops[where][0] in ("REMOVE", "BLANK", "remove", "blank") or elem.VR == "SQ":
                gone.append(where)
        else:
            action = "keep"
        name = elem.keyword or "(private)"
        lines.append(f"{indent}{elem.tag} {name:<36} {elem.VR:<2} {action:<44} {placeholder(elem)}")
    for add in recipe.additions:
        lines.append(f"add {add['field']} = {add.get('value')!r}")
    lines.append(
        "added: PatientIdentityRemoved, DeidentificationMethod, DeidentificationMethodCodeSequence "
        "(the profile and each option in force), LongitudinalTemporalInformationModified"
    )
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


OP_WORDS = {
    "remove": "removed",
    "blank": "emptied (zero length; a sequence: no items)",
    "dummy": "replaced by a dummy value of its VR (a UID: a consistent new one; a sequence: no items)",
    "remap": "replaced by a consistent keyed-hash UID (a sequence: kept, the UIDs in it replaced)",
    "keep": "kept",
    "shift": "shifted by the patient's date shift (times of day kept)",
    "clean": "kept, with every identifying value of the batch taken out",
}


def profile_rows(recipe: Recipe) -> list[tuple[str, str, str, str, str]]:
    """Every row of the table: (tag, name, profile action, options, what this configuration does)."""
    from pydicom.datadict import dictionary_VR

    profile = recipe.profile
    replaced = {a["field"]: a.get("value") or "" for a in recipe.actions if a["action"] == "REPLACE"}
    out = []
    for row in sorted(profile.rows.values(), key=lambda r: r.name.lower()) + list(profile._masks):  # type: ignore[attr-defined]
        tag = int(row.tag.upper().replace("XXXX", "3000").replace("XX", "00"), 16)
        try:
            vr = dictionary_VR(tag).split(" or ")[0]
        except KeyError:
            vr = "SQ" if row.name.endswith("Sequence") else "UN"
        keyword = _keyword(tag)
        done = OP_WORDS[profile.op(tag, vr).value]
        if keyword in replaced:
            done = "replaced by " + KINDS.get(replaced[keyword], replaced[keyword]) + " (recipe)"
        options = ", ".join(f"{k} {v}" for k, v in sorted(row.options.items()))
        tag_text = f"({row.tag[:4]},{row.tag[4:]})"
        out.append((tag_text, row.name, row.basic, options, done))
    return out


def _keyword(tag: int) -> str:
    from pydicom.datadict import keyword_for_tag

    return keyword_for_tag(tag)


def profile_markdown(recipe: Recipe) -> str:
    """The whole table as this configuration applies it (PROFILE.md is this, for the shipped settings)."""
    profile = recipe.profile
    rows = profile_rows(recipe)
    lines = [
        f"# What happens to each attribute of DICOM PS3.15 Table E.1-1 ({profile.edition})",
        "",
        "Made by `python -m sendit_luigi profile` from the table file and the settings in force:",
        f"options {', '.join(sorted(profile.options)) or 'none'}; recipe {recipe.name} (hash {recipe.hash}).",
        "Private attributes are removed, except blocks of the creators in `[deid] keep_private_creators`;",
        "a public tag that neither the table nor pydicom's dictionary knows is removed; every other",
        "attribute is kept.",
        "",
        "| tag | attribute | profile | options | done here |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [f"| {t} | {n} | {b} | {o} | {d} |" for t, n, b, o, d in rows]
    return "\n".join(lines) + "\n"


def profile_summary(recipe: Recipe) -> str:
    """How many attributes of the table end which way, with a few examples each (README's table)."""
    rows = profile_rows(recipe)
    groups: dict[str, list[str]] = {}
    for _tag, name, _basic, _options, done in rows:
        groups.setdefault(done, []).append(name)
    lines = ["| done | attributes | for example |", "| --- | --- | --- |"]
    for done, names in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        lines.append(f"| {done} | {len(names)} | {', '.join(names[:4])}{' ...' if len(names) > 4 else ''} |")
    return "\n".join(lines) + "\n"
