"""Finding the fal API key. The key lives in the environment or a credentials file,
never in a workflow: a workflow only names a profile.

Order: a named profile from a credentials file; else FAL_KEY; else FAL_KEY_ID +
FAL_KEY_SECRET; else the file's "default" profile.

Credentials file (JSON, first one found):
  $FAL_AUDIO_CREDENTIALS, <ComfyUI>/user/fal-audio/credentials.json,
  <this pack>/fal_credentials.json (git-ignored)
  {"default": "KEY_ID:KEY_SECRET", "work": {"key_id": "...", "key_secret": "...",
                                            "database_url": "postgresql://user:password@host/db"}}

A profile's `database_url` puts the books of the runs using it on that PostgreSQL database (docs/workers.md);
$FAL_AUDIO_DATABASE_URL, when set, wins for every run (the caller looks at it first).
"""

import json
import os
import re
from pathlib import Path
from typing import List, Optional, Tuple
from urllib.parse import urlsplit

from ..core import comfy, secrets
from ..core.errors import CredentialsError

PACK_DIR = Path(__file__).resolve().parent.parent
DATABASE = "database_url"  # a profile's entry naming the database of its books
_KEY_SHAPE = re.compile(r"^[A-Za-z0-9_\-.]+:[A-Za-z0-9_\-.]+$")

HOW_TO_SET = (
    "Set the FAL_KEY environment variable before starting ComfyUI "
    "(export FAL_KEY=KEY_ID:KEY_SECRET), or put it in a credentials file: {files}, "
    'as {{"default": "KEY_ID:KEY_SECRET"}}. Get a key at https://fal.ai/dashboard/keys.'
)


def credential_files() -> List[Path]:
    files = []
    if os.environ.get("FAL_AUDIO_CREDENTIALS"):
        files.append(Path(os.environ["FAL_AUDIO_CREDENTIALS"]))
    files.append(comfy.data_directory() / "credentials.json")
    files.append(PACK_DIR / "fal_credentials.json")
    return files


def how_to_set() -> str:
    return HOW_TO_SET.format(files=" or ".join(str(f) for f in credential_files()))


def _checked(key: str, source: str) -> str:
    key = key.strip()
    secrets.register(key)
    if not _KEY_SHAPE.match(key):
        # Never echo the value: it may be a real key pasted with a typo.
        raise CredentialsError(
            f"The fal API key from {source} is malformed: expected KEY_ID:KEY_SECRET "
            f"(two parts joined by ':', no spaces or quotes). The value is not shown. " + how_to_set()
        )
    return key


def _profile_key(entry, source: str) -> str:
    if isinstance(entry, str):
        return _checked(entry, source)
    if isinstance(entry, dict):
        if "key" in entry:
            return _checked(str(entry["key"]), source)
        if "key_id" in entry and "key_secret" in entry:
            return _checked(f"{entry['key_id']}:{entry['key_secret']}", source)
    raise CredentialsError(
        f"{source} is not a key: use a string \"KEY_ID:KEY_SECRET\" or "
        '{"key_id": "...", "key_secret": "..."}. ' + how_to_set()
    )


def _load_profiles() -> Tuple[Optional[Path], dict]:
    for path in credential_files():
        if not path.is_file():
            continue
        try:
            profiles = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            # The exception text could quote file content (the key): name only the file.
            raise CredentialsError(
                f"Could not read the credentials file {path} ({type(exc).__name__}): it must be JSON "
                'like {"default": "KEY_ID:KEY_SECRET"}.'
            ) from None
        if not isinstance(profiles, dict):
            raise CredentialsError(f"The credentials file {path} must hold a JSON object of named profiles.")
        for entry in profiles.values():  # scrub every key in the file, even unused ones
            if isinstance(entry, str):
                secrets.register(entry.strip())
            elif isinstance(entry, dict):
                for name, value in entry.items():  # of a database URL only its password is secret
                    secrets.register(_password(value) if name == DATABASE else str(value))
        return path, profiles
    return None, {}


def _password(url) -> str:
    try:
        return urlsplit(str(url)).password or ""
    except ValueError:  # not a URL: told when it is used
        return ""


def _profile(profile: str) -> Tuple[Optional[Path], dict]:
    """(file, profiles) of a credentials file that has `profile`; CredentialsError naming the profiles found."""
    path, profiles = _load_profiles()
    if profile not in profiles:
        where = f"the credentials file {path}" if path else "no credentials file"
        known = ", ".join(sorted(profiles)) or "none"
        raise CredentialsError(
            f"The fal Client asks for credentials profile '{profile}', but {where} has it "
            f"(profiles found: {known}). " + how_to_set()
        )
    return path, profiles


def resolve_key(profile: str = "") -> str:
    """Return the key to use; raise CredentialsError saying where to put one."""
    profile = (profile or "").strip()
    if profile:
        path, profiles = _profile(profile)
        return _profile_key(profiles[profile], f"profile '{profile}' in {path}")
    if os.environ.get("FAL_KEY", "").strip():
        return _checked(os.environ["FAL_KEY"], "the FAL_KEY environment variable")
    key_id, key_secret = os.environ.get("FAL_KEY_ID", "").strip(), os.environ.get("FAL_KEY_SECRET", "").strip()
    if key_id or key_secret:
        if not (key_id and key_secret):
            raise CredentialsError("FAL_KEY_ID and FAL_KEY_SECRET must both be set. " + how_to_set())
        return _checked(f"{key_id}:{key_secret}", "FAL_KEY_ID/FAL_KEY_SECRET")
    path, profiles = _load_profiles()
    if "default" in profiles:
        return _profile_key(profiles["default"], f"profile 'default' in {path}")
    raise CredentialsError("No fal API key found. " + how_to_set())


def database_url(profile: str = "") -> Tuple[Optional[str], str]:
    """The `database_url` of a run's profile (the fal Client's, else "default") and where it is written, or
    (None, "") when the profile names no database (its books stay in the SQLite file). Never says the password."""
    named = (profile or "").strip()
    path, profiles = _profile(named) if named else _load_profiles()
    name = named or "default"
    entry = profiles.get(name)
    url = entry.get(DATABASE) if isinstance(entry, dict) else None
    if url is None:
        return None, ""
    where = f"profile '{name}' in {path}"
    if not isinstance(url, str) or not url.strip().startswith(("postgresql://", "postgres://")):
        raise CredentialsError(f"The '{DATABASE}' of {where} is not a PostgreSQL URL: write it as "
                               '"postgresql://user:password@host:5432/database" (the value is not shown).')
    return url.strip(), where
