"""The breaking gate flags exactly the breaking edits to a released contract.

Each catalogue entry edits a copy of profile v1 by exact string replacement and runs
`buf breaking <edited> --against <baseline>` with the repo's buf.yaml (FILE rules). A breaking
edit must be reported under exactly the rule ids listed (buf 1.75's FILE category; see
`buf config ls-breaking-rules`); a safe edit must pass. Anchors must occur exactly once in the
real file, so an edit that no longer applies fails loudly instead of passing vacuously.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
V1 = Path("proto/microstate/profile/v1/profile.proto")
BUF_EXIT_VIOLATIONS = 100  # buf's exit code when it reports file annotations


@dataclass(frozen=True)
class Edit:
    replacements: tuple[tuple[str, str], ...]
    rules: frozenset[str] = frozenset()  # empty: the edit is safe
    new_files: tuple[tuple[str, str], ...] = ()  # (path under the workspace, text)


def breaking(*replacements: tuple[str, str], rules: set[str]) -> Edit:
    return Edit(replacements, frozenset(rules))


def safe(*replacements: tuple[str, str]) -> Edit:
    return Edit(replacements)


def insert_after(anchor: str, text: str) -> tuple[str, str]:
    return anchor, anchor + text


RPC_DELETE_PROFILE = "  rpc DeleteProfile(DeleteProfileRequest) returns (DeleteProfileResponse);\n"
RPC_GET_PROFILE = "rpc GetProfile(GetProfileRequest) returns (Profile);"
RPC_WATCH_PROFILES = "rpc WatchProfiles(WatchProfilesRequest) returns (stream WatchProfilesResponse);\n"
DELETE_RESPONSE = "message DeleteProfileResponse {}\n"
# Incompatible with v1's Profile, and safe because it is a new file in a new package (a v2 beside v1).
NEW_PACKAGE_FILE = (
    "proto/microstate/profileprobe/v2/profile.proto",
    'syntax = "proto3";\n\npackage microstate.profileprobe.v2;\n\n'
    "// A profile.\nmessage Profile {\n  string user_id = 1;\n  bytes display_name = 2;\n}\n",
)

BREAKING = {
    "delete-field": breaking(("  string locale = 3;\n", ""), rules={"FIELD_NO_DELETE"}),
    "change-field-type": breaking(("string locale = 3;", "bytes locale = 3;"), rules={"FIELD_SAME_TYPE"}),
    # Buf keys fields by number: the old number 3 is gone.
    "change-field-number": breaking(("string locale = 3;", "string locale = 9;"), rules={"FIELD_NO_DELETE"}),
    "rename-field": breaking(
        ("string display_name = 2;", "string full_name = 2;"),
        rules={"FIELD_SAME_NAME", "FIELD_SAME_JSON_NAME"},
    ),
    "singular-to-repeated": breaking(
        ("string locale = 3;", "repeated string locale = 3;"), rules={"FIELD_SAME_CARDINALITY"}
    ),
    "delete-rpc": breaking((RPC_DELETE_PROFILE, ""), rules={"RPC_NO_DELETE"}),
    # There is no RPC_SAME_NAME: a renamed method is the old one deleted.
    "rename-rpc": breaking(("rpc DeleteProfile(", "rpc RemoveProfile("), rules={"RPC_NO_DELETE"}),
    "watch-becomes-unary": breaking(
        ("returns (stream WatchProfilesResponse)", "returns (WatchProfilesResponse)"),
        rules={"RPC_SAME_SERVER_STREAMING"},
    ),
    "get-becomes-server-streaming": breaking(
        (RPC_GET_PROFILE, RPC_GET_PROFILE.replace("(Profile)", "(stream Profile)")),
        rules={"RPC_SAME_SERVER_STREAMING"},
    ),
    "get-becomes-client-streaming": breaking(
        (RPC_GET_PROFILE, RPC_GET_PROFILE.replace("(GetProfileRequest)", "(stream GetProfileRequest)")),
        rules={"RPC_SAME_CLIENT_STREAMING"},
    ),
    "change-package": breaking(
        ("package microstate.profile.v1;", "package microstate.profile.v1beta1;"), rules={"FILE_SAME_PACKAGE"}
    ),
    # Enum values are keyed by number too: renumbering deletes 3; swapping renames 2 and 3.
    "change-enum-value-number": breaking(
        ("CHANGE_TYPE_DELETED = 3;", "CHANGE_TYPE_DELETED = 5;"), rules={"ENUM_VALUE_NO_DELETE"}
    ),
    "swap-enum-value-numbers": breaking(
        ("CHANGE_TYPE_UPDATED = 2;", "CHANGE_TYPE_UPDATED = 3;"),
        ("CHANGE_TYPE_DELETED = 3;", "CHANGE_TYPE_DELETED = 2;"),
        rules={"ENUM_VALUE_SAME_NAME"},
    ),
    "delete-enum-value": breaking(("  CHANGE_TYPE_DELETED = 3;\n", ""), rules={"ENUM_VALUE_NO_DELETE"}),
    # Every message is in use, so deleting one also deletes the RPC that returned it.
    "delete-message": breaking(
        (RPC_DELETE_PROFILE, ""), (DELETE_RESPONSE, ""), rules={"MESSAGE_NO_DELETE", "RPC_NO_DELETE"}
    ),
    "rename-message": breaking(
        ("returns (DeleteProfileResponse)", "returns (RemoveProfileResponse)"),
        (DELETE_RESPONSE, "message RemoveProfileResponse {}\n"),
        rules={"MESSAGE_NO_DELETE", "RPC_SAME_RESPONSE_TYPE"},
    ),
}

SAFE = {
    "add-field": safe(
        insert_after("update_time = 8;\n", "  // An IANA time zone.\n  string time_zone = 9;\n")
    ),
    "add-rpc": safe(
        insert_after(
            RPC_WATCH_PROFILES,
            "\n  // Undeletes.\n  rpc UndeleteProfile(UndeleteProfileRequest) returns (Profile);\n",
        ),
        insert_after(
            DELETE_RESPONSE,
            "\n// Request for UndeleteProfile.\nmessage UndeleteProfileRequest {\n  string user_id = 1;\n}\n",
        ),
    ),
    "add-message": safe(
        insert_after(
            DELETE_RESPONSE, "\n// One audited write.\nmessage ProfileAudit {\n  string user_id = 1;\n}\n"
        )
    ),
    "add-enum-value": safe(
        insert_after("CHANGE_TYPE_DELETED = 3;\n", "  // Restored.\n  CHANGE_TYPE_RESTORED = 5;\n")
    ),
    "add-comment": safe(insert_after("// A user's profile.\n", "// Readable through every version.\n")),
    "add-file-in-new-package": Edit(replacements=(), new_files=(NEW_PACKAGE_FILE,)),
}


def workspace(where: Path) -> Path:
    shutil.copytree(ROOT / "proto", where / "proto")
    shutil.copy2(ROOT / "buf.yaml", where / "buf.yaml")
    return where


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return workspace(tmp_path_factory.mktemp("baseline"))


def edited(where: Path, edit: Edit) -> Path:
    root = workspace(where)
    text = (root / V1).read_text()
    for anchor, replacement in edit.replacements:
        assert text.count(anchor) == 1, f"anchor no longer occurs exactly once in {V1}: {anchor!r}"
        text = text.replace(anchor, replacement)
    (root / V1).write_text(text)
    for path, content in edit.new_files:
        assert not (root / path).exists(), f"{path} exists in the repo now: pick another path for this edit"
        (root / path).parent.mkdir(parents=True)
        (root / path).write_text(content)
    return root


def run_breaking(buf: str, modified: Path, baseline: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [buf, "breaking", str(modified), "--against", str(baseline), "--error-format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("edit", BREAKING.values(), ids=BREAKING.keys())
def test_breaking_edit_is_flagged_by_its_rule(buf: str, baseline: Path, tmp_path: Path, edit: Edit) -> None:
    result = run_breaking(buf, edited(tmp_path, edit), baseline)
    assert result.returncode == BUF_EXIT_VIOLATIONS, result.stdout + result.stderr
    violations = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert {violation["type"] for violation in violations} == edit.rules, result.stdout
    assert all(violation["path"].endswith(str(V1)) for violation in violations), result.stdout


@pytest.mark.parametrize("edit", SAFE.values(), ids=SAFE.keys())
def test_safe_edit_passes(buf: str, baseline: Path, tmp_path: Path, edit: Edit) -> None:
    result = run_breaking(buf, edited(tmp_path, edit), baseline)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""
