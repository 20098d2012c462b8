"""Stage 3's concerns, one module each.

* ``profile``   DICOM PS3.15 Table E.1-1 (a data file) and the options in force: one decision per tag
* ``recipe``    the profile plus the recipe file's own lines, compiled into per-layout plans
* ``leakcheck`` what must not survive (from the same table), and the byte scan of every written file
* ``pixels``    pixel data that is all there
* ``pack``      the per-file loop and the tarball, whole or absent
* ``summary``   the header values a study's files share, for its metadata row
* ``walk``      one walk over a dataset's raw elements, with a bound on nesting
"""

from .leakcheck import LeakCheck, check_written, identifying_values
from .pack import InputChanged, PackResult, TarballBroken, pack_study
from .profile import Op, Profile, ProfileError
from .recipe import Context, Recipe, shift_date, uid_remapper

__all__ = [
    "Context",
    "InputChanged",
    "LeakCheck",
    "Op",
    "PackResult",
    "Profile",
    "ProfileError",
    "Recipe",
    "TarballBroken",
    "check_written",
    "identifying_values",
    "pack_study",
    "shift_date",
    "uid_remapper",
]
