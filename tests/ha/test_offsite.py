"""The machine room lost with its repository: the cluster rebuilt from the off-site bucket alone.

The offsite stack's lab (its repository VM, and repo2 in a SeaweedFS bucket
the lab serves over TLS with object lock): WAL reaches the bucket, then the
link to it is cut and every VM, the repository's included, dies with its
disk. ``pgha:restore`` with ``repository: offsite`` rebuilds the stack from
the bucket (lab/scenarios/restore.py). Runs once in CI; RPO and RTO over
several runs: ``python -m lab --stack offsite bench offsite-restore``.
"""

from __future__ import annotations

import json

import pytest

from lab.cluster import Lab, offsite
from lab.faults import READY_TIMEOUT
from lab.machines import inside
from lab.observation import is_healthy
from lab.scenarios.backups import status as backup_status
from lab.scenarios.offsite_archive import repository_lost
from lab.scenarios.restore import offsite_disaster_recovery

pytestmark = pytest.mark.lab

# Slack over archive_timeout for the asynchronous push and the lab's load.
RPO_SLACK_S = 5.0
# The repository VM lost: a new segment is in the bucket within this (16 s in the lab). A run
# gives up on the VM after three tries of io-timeout (15 s); a segment may wait for the run under
# way, which, with a session open to the VM when it died, first waits protocol-timeout (60 s). With
# pgBackRest's defaults one run takes 3 min (docs/measurements/offsite.md).
OTHER_REPO_BOUND_S = 120.0


def test_the_bucket_keeps_what_its_own_keys_wrote(offsite_lab: Lab) -> None:
    """COMPLIANCE retention: the stack's key pair cannot delete an old version, nor lift the lock."""
    from botocore.exceptions import ClientError

    bucket = "pgha-offsite"
    s3 = offsite.client(offsite_lab)
    with inside(offsite_lab.network.path):
        first = s3.put_object(Bucket=bucket, Key="lab-probe/locked", Body=b"v1")["VersionId"]
        s3.put_object(Bucket=bucket, Key="lab-probe/locked", Body=b"v2")
        with pytest.raises(ClientError) as refused:
            s3.delete_object(Bucket=bucket, Key="lab-probe/locked", VersionId=first)
        assert refused.value.response["Error"]["Code"] == "AccessDenied"
        with pytest.raises(ClientError):
            s3.put_object_lock_configuration(
                Bucket=bucket, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"}
            )
        assert s3.get_object(Bucket=bucket, Key="lab-probe/locked", VersionId=first)["Body"].read() == b"v1"


def test_backup_status_reports_both_repositories(offsite_lab: Lab) -> None:
    found = backup_status(offsite_lab)
    assert found is not None and found["ok"], found
    assert set(found["repos"]) == {"repo1", "repo2"}, found
    assert all(r["backups"] >= 1 for r in found["repos"].values()), found


def test_archiving_to_the_bucket_goes_on_without_the_repository_vm(offsite_lab: Lab) -> None:
    """The repository VM dead under writes: WAL reaches the bucket, writes go on, and the VM gets every
    segment it missed once it is back (and pgha-backup-status is ok again). The bucket lost instead
    takes minutes: ``python -m lab --stack offsite bench offsite-archive --lost bucket``."""
    result = repository_lost(offsite_lab, "repository-vm")
    print(json.dumps(result))
    message = json.dumps(result)
    assert result["other_repo_s"] is not None, message
    assert result["other_repo_s"] <= OTHER_REPO_BOUND_S, message
    assert result["acked_during_outage"] > 0, message
    assert result["catch_up_s"] is not None and not result["missing_in_returned"], message
    assert result["status_ok"], message


def test_everything_lost_then_rebuilt_from_the_offsite_copy(offsite_lab: Lab) -> None:
    result = offsite_disaster_recovery(offsite_lab)
    print(json.dumps(result))
    message = json.dumps(result)
    # A backup and the WAL reached repo2.
    assert result["repo2_backups"], message
    # Every row acknowledged before the archive point came back from the bucket.
    assert result["acked_before_archive_point"] > 0, message
    assert result["missing_before_archive_point"] == 0, message
    # What is lost is only the tail archive_timeout allows.
    assert result["rpo_s"] is not None, message
    assert result["rpo_s"] <= result["archive_timeout_s"] + RPO_SLACK_S, message
    assert result["oldest_missing_before_cut_s"] <= result["archive_timeout_s"] + RPO_SLACK_S, message
    # The negative control: rows acknowledged after the bucket was cut off are all gone, so the
    # check does see a loss, and nothing but the bucket fed the rebuild.
    assert result["acked_after_cut"] > 0, message
    assert result["present_after_cut"] == 0, message
    offsite_lab.wait_ready(timeout=READY_TIMEOUT)
    assert is_healthy(offsite_lab, offsite_lab.status())
