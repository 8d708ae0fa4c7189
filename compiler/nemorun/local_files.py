"""File names a local job's folder holds that both its renderer and its submitter know.

Why its own module: ``exp status`` of a local job reads the attempts file through
:mod:`nemorun.submitters.local`; taking the name from :mod:`nemorun.targets.local` imported the
renderer's Jinja and OmegaConf (a tenth of a second) into every status.
"""
from __future__ import annotations

# one line "attempt N exit RC" per finished attempt, when the job retries
ATTEMPTS_FILE = "attempts"
