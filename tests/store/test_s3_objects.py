"""``s3://bucket/prefix`` addresses, and what a user is told when the bucket is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataferry.errors import StoreError, UsageError
from dataferry.model.load import load_model
from dataferry.store.objects import Location, ObjectStore
from dataferry.store.store import Store
from tests.conftest import write_files
from tests.store.conftest import TEAM, orders
from tests.store.test_full_disk import orders as big_orders
from tests.store.test_s3_store import S3Server, machine, s3_server  # noqa: F401
from tests.store.test_s3_store import bucket as bucket  # a fixture

_SEGMENT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1,
                   max_size=12).filter(lambda s: s not in (".", ".."))
_BUCKET = st.from_regex(r"[a-z0-9][a-z0-9-]{1,20}[a-z0-9]", fullmatch=True)


@given(_BUCKET, st.lists(_SEGMENT, max_size=4))
def test_a_store_url_round_trips(name: str, segments: list[str]) -> None:
    prefix = "/".join(segments)
    location = Location.parse(f"s3://{name}/{prefix}")
    assert (location.bucket, location.prefix) == (name, prefix)
    assert Location.parse(location.url()) == location
    assert location.key("shop/orders/x") == "/".join([*segments, "shop/orders/x"])
    assert Location.parse(f"s3://{name}/{prefix}/") == location  # a trailing slash


@pytest.mark.parametrize("url", ["s3://", "s3:///prefix", "http://bucket/x",
                                 "s3://bucket/x?endpoint=http://evil", "s3://bucket/x#y"])
def test_a_malformed_store_url_is_a_usage_error(url: str) -> None:
    with pytest.raises(UsageError, match="s3://"):
        Location.parse(url)


def test_a_missing_bucket_is_named_with_what_to_do(tmp_path: Path, bucket: str) -> None:
    gone = machine(tmp_path, "one", f"{bucket}-missing")
    with pytest.raises(StoreError) as raised:
        gone.publish("shop.orders", orders(range(3)))
    text = str(raised.value)
    assert f"s3://{bucket}-missing/lake/shop/orders/" in text
    assert "NoSuchBucket" in text and "create the bucket" in text
    assert "ferry-secret" not in text


def test_no_credentials_is_said_without_a_traceback(
        tmp_path: Path, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(StoreError, match=r"NoCredentialsError; check the bucket, the "
                                         r"endpoint \(AWS_ENDPOINT_URL\) and the credentials"):
        ObjectStore(Location(bucket, "lake")).get("lake/x")


def test_a_full_disk_under_the_mirror_is_one_line(
        tmp_path: Path, bucket: str, small_disk: Path) -> None:
    one = machine(tmp_path, "one", bucket)
    for seed in (1, 2, 3):  # three versions of ~2.5 MiB of incompressible text each
        one.publish("shop.orders", big_orders(seed), max_delete_ratio=None)
    root = write_files(tmp_path / "two", {
        "ferry.yaml": f"ecosystem: acme\nzones: {{eu: {{}}}}\nhome: {small_disk}\n"
                      f"store: s3://{bucket}/lake\n",
        "teams/shop/shop.yaml": TEAM})
    loaded = load_model(root)
    assert loaded.ecosystem is not None
    dataset = Store.for_model(root, loaded.ecosystem).dataset("shop.orders")  # history only
    with pytest.raises(StoreError) as raised:  # the data files, fetched as they are read
        for number in (1, 2, 3):
            dataset.active_files(number)
    assert "no space left on the device" in str(raised.value)
    assert f"s3://{bucket}/lake/shop/orders/" in str(raised.value)
    assert not [p for p in small_disk.rglob("*.download")]  # no partial file left
