"""kubectl apply's last-applied record and three-way merge of labels and annotations
(pymaster.registry.applied)."""

from __future__ import annotations

import json

import pytest

from pymaster.api import objects_pb2
from pymaster.api.errors import ValidationError
from pymaster.registry.applied import LAST_APPLIED_ANNOTATION, merge, record, with_record


def config_map(labels: dict[str, str], annotations: dict[str, str] | None = None) -> objects_pb2.ConfigMap:
    cm = objects_pb2.ConfigMap(api_version="v1", kind="ConfigMap")
    cm.metadata.name = "app"
    cm.metadata.labels.update(labels)
    cm.metadata.annotations.update(annotations or {})
    cm.data["a"] = "1"
    return cm


def test_the_record_is_the_manifest_without_what_the_cluster_sets():
    cm = config_map({"app": "web"}, {LAST_APPLIED_ANNOTATION: "old", "note": "x"})
    cm.metadata.uid, cm.metadata.resource_version, cm.metadata.generation = "u1", "42", 3
    cm.metadata.creation_timestamp.seconds = 1
    assert json.loads(record(cm)) == {"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "1"},
                                      "metadata": {"name": "app", "labels": {"app": "web"},
                                                   "annotations": {"note": "x"}}}
    assert record(cm).endswith("\n") and "\n" not in record(cm)[:-1]


def test_a_secrets_values_stay_out_of_the_record():
    secret = objects_pb2.Secret(api_version="v1", kind="Secret", type="Opaque")
    secret.metadata.name = "db"
    secret.data["password"] = b"hunter2"
    secret.string_data["token"] = "s3cret"
    assert json.loads(record(secret)) == {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                                          "metadata": {"name": "db"}}


@pytest.mark.parametrize(
    ("last", "stored", "applied", "expected"),
    [
        # A key someone else added (pyctl label, a controller) is kept.
        ({"app": "web"}, {"app": "web", "team": "a"}, {"app": "web"}, {"app": "web", "team": "a"}),
        # A key the last manifest had and this one drops goes.
        ({"app": "web", "tier": "1"}, {"app": "web", "tier": "1"}, {"app": "web"}, {"app": "web"}),
        # The manifest's value wins over the stored one.
        ({"app": "web"}, {"app": "old", "team": "a"}, {"app": "new"}, {"app": "new", "team": "a"}),
        # No record yet (created, not applied): nothing is known to be dropped.
        (None, {"app": "web", "team": "a"}, {"app": "web"}, {"app": "web", "team": "a"}),
    ],
)
def test_labels_and_annotations_merge_three_ways(last, stored, applied, expected):
    current = config_map(stored, dict(stored))
    if last is not None:
        current = with_record(current, record(config_map(last, dict(last))))
    request = config_map(applied, dict(applied))
    merged = merge(current, request, record(request))
    assert dict(merged.metadata.labels) == expected
    annotations = dict(merged.metadata.annotations)
    assert annotations.pop(LAST_APPLIED_ANNOTATION) == record(request)
    assert annotations == expected


def test_a_record_edited_by_hand_counts_as_none():
    current = config_map({"app": "web", "team": "a"}, {LAST_APPLIED_ANNOTATION: "{not json"})
    merged = merge(current, config_map({"app": "web"}), record(config_map({"app": "web"})))
    assert dict(merged.metadata.labels) == {"app": "web", "team": "a"}


def test_a_manifest_that_cannot_be_written_as_json_is_refused_by_field():
    job = objects_pb2.Job(api_version="batch/v1", kind="Job")
    job.metadata.name = "pi"
    job.spec.template.metadata.creation_timestamp.nanos = -1
    with pytest.raises(ValidationError, match=LAST_APPLIED_ANNOTATION):
        record(job)
