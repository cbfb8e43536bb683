"""Hrefs -> locations -> hrefs: every scheme stacpkg knows, and never a secret in what we print or store."""

from __future__ import annotations

import pytest

from packager.errors import HrefError
from packager.locations import (
    Location,
    extension_of,
    location_from_lock_fields,
    parse_href,
    safe_href,
    strip_signature,
)

# href -> (kind, container, key, endpoint): stacpkg's location table, plus ports, accounts and aliases
TABLE = {
    "/data/scenes/a.tif": ("file", None, "/data/scenes/a.tif", None),
    "file:///data/scenes/a.tif": ("file", None, "/data/scenes/a.tif", None),
    "file://localhost/data/a.tif": ("file", None, "/data/a.tif", None),
    "local:///data/a.tif": ("file", None, "/data/a.tif", None),
    "file:///data/with%20space.tif": ("file", None, "/data/with space.tif", None),
    "s3://bucket/path/to/a.tif": ("s3", "bucket", "path/to/a.tif", None),
    "s3a://bucket/path/to/a.tif": ("s3", "bucket", "path/to/a.tif", None),
    "S3://bucket/k": ("s3", "bucket", "k", None),
    "gs://bucket/k/a.tif": ("gs", "bucket", "k/a.tif", None),
    "gcs://bucket/k/a.tif": ("gs", "bucket", "k/a.tif", None),
    "az://container/k/a.tif": ("az", "container", "k/a.tif", None),
    "abfs://container@acct.dfs.core.windows.net/k/a.tif":
        ("az", "container", "k/a.tif", "https://acct.blob.core.windows.net"),
    "abfss://container@acct.dfs.core.windows.net/k/a.tif":
        ("az", "container", "k/a.tif", "https://acct.blob.core.windows.net"),
    "http://127.0.0.1:8080/data/a.tif": ("http", "http://127.0.0.1:8080", "data/a.tif", None),
    "https://cdn.example.com/data/a.tif": ("https", "https://cdn.example.com", "data/a.tif", None),
    "https://cdn.example.com:8443/a.tif": ("https", "https://cdn.example.com:8443", "a.tif", None),
    "swift://container/k/a.tif": ("swift", "container", "k/a.tif", None),
    "webdav://dav.example.com/remote.php/a.tif": ("webdav+http", "http://dav.example.com", "remote.php/a.tif", None),
    "webdavs://dav.example.com:8443/a.tif": ("webdav+https", "https://dav.example.com:8443", "a.tif", None),
}


@pytest.mark.parametrize("href", list(TABLE))
def test_location_table(href):
    kind, container, key, endpoint = TABLE[href]
    loc = parse_href(href)
    assert (loc.kind, loc.container, loc.key, loc.endpoint) == (kind, container, key, endpoint)
    # the rebuilt href parses back to the same location (the endpoint travels beside it, as in the lock)
    assert parse_href(loc.href(), endpoint=loc.endpoint) == loc
    assert str(loc) == loc.href()


def test_rebuilt_hrefs_are_urls():
    assert parse_href("/data/a b.tif").href() == "file:///data/a%20b.tif"
    assert parse_href("s3a://bucket/k/a.tif").href() == "s3://bucket/k/a.tif"
    assert parse_href("gcs://bucket/year=2024/a.tif").href() == "gs://bucket/year=2024/a.tif"
    assert parse_href("http://127.0.0.1:8080/data/a.tif").href() == "http://127.0.0.1:8080/data/a.tif"
    assert parse_href("webdavs://dav.example.com:8443/a.tif").href() == "webdavs://dav.example.com:8443/a.tif"
    assert parse_href("https://cdn.example.com").href() == "https://cdn.example.com"


def test_plain_paths_are_file_names_not_urls():
    # '%' and '#' in a plain path are characters of the file name (stacpkg keeps the href unchanged)
    assert parse_href("/data/100%25.tif").key == "/data/100%25.tif"
    assert parse_href("/data/scene#1.tif").key == "/data/scene#1.tif"
    loc = parse_href("/data/scene#1.tif")
    assert parse_href(loc.href()) == loc
    assert parse_href("/data/./x/../a.tif").key == "/data/a.tif"


def test_object_keys_with_url_characters_round_trip():
    loc = Location("s3", "bucket", "dir/a b#1%.tif")
    assert parse_href(loc.href()) == loc


def test_s3_endpoint_recorded_only_where_it_means_something():
    assert parse_href("s3://b/k", endpoint="http://127.0.0.1:9000").endpoint == "http://127.0.0.1:9000"
    assert parse_href("gs://b/k", endpoint="http://127.0.0.1:9000").endpoint is None
    assert parse_href("https://h/k", endpoint="http://127.0.0.1:9000").endpoint is None


SECRET = "S3CR3TVALUE"
SIGNED = {
    "s3 presigned": (
        "https://bucket.s3.us-west-2.amazonaws.com/k/a.tif?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        f"&X-Amz-Credential=AKIA{SECRET}%2F20240101%2Fus-west-2%2Fs3%2Faws4_request&X-Amz-Date=20240101T000000Z"
        f"&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Security-Token={SECRET}&X-Amz-Signature={SECRET}",
        "https://bucket.s3.us-west-2.amazonaws.com/k/a.tif",
    ),
    "s3 sigv2": (
        f"https://bucket.s3.amazonaws.com/k/a.tif?AWSAccessKeyId=AKIA&Expires=1700000000&Signature={SECRET}",
        "https://bucket.s3.amazonaws.com/k/a.tif",
    ),
    "azure sas": (
        "https://acct.blob.core.windows.net/container/k/a.tif?sv=2022-11-02&ss=b&srt=co&sp=r"
        f"&se=2030-01-01T00:00:00Z&st=2024-01-01T00:00:00Z&spr=https&sig={SECRET}%3D",
        "https://acct.blob.core.windows.net/container/k/a.tif",
    ),
    "gcs signed": (
        "https://storage.googleapis.com/bucket/k/a.tif?X-Goog-Algorithm=GOOG4-RSA-SHA256"
        f"&X-Goog-Credential=sa%40proj.iam.gserviceaccount.com%2F20240101%2Fauto%2Fstorage%2Fgoog4_request"
        f"&X-Goog-Date=20240101T000000Z&X-Goog-Expires=900&X-Goog-SignedHeaders=host&X-Goog-Signature={SECRET}",
        "https://storage.googleapis.com/bucket/k/a.tif",
    ),
    "swift temp_url": (
        f"https://swift.example.com/v1/AUTH_acct/container/a.tif?temp_url_sig={SECRET}&temp_url_expires=1700000000",
        "https://swift.example.com/v1/AUTH_acct/container/a.tif",
    ),
    "swift scheme": (f"swift://container/a.tif?temp_url_sig={SECRET}&temp_url_expires=1", "swift://container/a.tif"),
    "basic auth": (f"https://user:{SECRET}@cdn.example.com/a.tif", "https://cdn.example.com/a.tif"),
    "webdav password": (f"webdavs://user:{SECRET}@dav.example.com/a.tif", "webdavs://dav.example.com/a.tif"),
}


@pytest.mark.parametrize("name", list(SIGNED))
def test_signed_hrefs_lose_their_secret(name):
    href, clean = SIGNED[name]
    stripped = strip_signature(href)
    assert stripped.was_signed
    assert SECRET not in stripped.href and SECRET not in safe_href(href)
    loc = parse_href(href)
    assert loc.href() == clean
    for shown in (loc.href(), str(loc), repr(loc), loc.key, str(loc.container)):
        assert SECRET not in shown


def test_harmless_query_parameters_are_kept():
    href = f"https://cdn.example.com/a.tif?format=tif&X-Amz-Signature={SECRET}&version=2"
    loc = parse_href(href)
    assert loc.href() == "https://cdn.example.com/a.tif?format=tif&version=2"
    assert parse_href(loc.href()) == loc
    unsigned = "https://cdn.example.com/a.tif?format=tif"
    assert strip_signature(unsigned).href == unsigned and not strip_signature(unsigned).was_signed
    assert parse_href(unsigned).href() == unsigned


def test_azure_container_at_account_is_not_a_credential():
    href = "abfs://container@acct.dfs.core.windows.net/k/a.tif"
    assert not strip_signature(href).was_signed
    assert parse_href(href).container == "container"


@pytest.mark.parametrize("href", [
    f"ftp://host/a.tif?X-Amz-Signature={SECRET}",
    f"ftp://user:{SECRET}@host/a.tif",
    f"relative/a.tif?sig={SECRET}&sv=2022",
    f"file://server/share/a.tif?sig={SECRET}",
    f"https:///no-host.tif?X-Goog-Signature={SECRET}",
    f"C:/data/a.tif?sig={SECRET}",
])
def test_no_secret_in_href_errors(href):
    with pytest.raises(HrefError) as info:
        parse_href(href)
    assert SECRET not in str(info.value)


def test_relative_href_needs_a_base():
    base = "file:///catalog/c1/item-1/item-1.json"
    assert parse_href("./B01.tif", base=base) == Location("file", None, "/catalog/c1/item-1/B01.tif")
    assert parse_href("../shared/B01.tif", base=base).key == "/catalog/c1/shared/B01.tif"
    assert parse_href("B01.tif", base="https://h/c/item.json") == Location("https", "https://h", "c/B01.tif")
    with pytest.raises(HrefError, match="relative href 'B01.tif' has no base.*self"):
        parse_href("B01.tif")


def test_unknown_scheme_names_scheme_and_fix():
    with pytest.raises(HrefError) as info:
        parse_href("ftp://host/a.tif")
    message = str(info.value)
    assert "'ftp'" in message and "rewrite rule" in message and "s3" in message


@pytest.mark.parametrize("href,fragment", [
    ("", "empty href"), ("   ", "empty href"), ("s3:///k", "no bucket"), ("https:///k", "no host"),
    ("file://server/share/a.tif", "names a host"), ("C:\\data\\a.tif", "Windows path"),
])
def test_bad_hrefs(href, fragment):
    with pytest.raises(HrefError, match=fragment):
        parse_href(href)


@pytest.mark.parametrize("href", [h for h in TABLE if not h.startswith("local:")] + [
    "s3://bucket/k",
    "https://cdn.example.com/a.tif?format=tif",
])
def test_lock_fields_round_trip(href):
    loc = parse_href(href, endpoint="http://127.0.0.1:9000" if href.startswith("s3") else None)
    rebuilt = location_from_lock_fields(loc.kind, loc.container, loc.key, loc.endpoint)
    assert rebuilt == loc
    assert parse_href(rebuilt.href(), endpoint=rebuilt.endpoint) == loc


def test_lock_fields_of_stacpkg():
    # stacpkg spellings: aliases, relative file keys against '/', s3 keys with a leading '/'
    assert location_from_lock_fields("local", None, "/data/a.tif", None) == Location("file", None, "/data/a.tif")
    assert location_from_lock_fields("file", None, "data/a.tif", None).key == "/data/a.tif"
    assert location_from_lock_fields("s3a", "b", "/k/a.tif", "") == Location("s3", "b", "k/a.tif")
    assert location_from_lock_fields("abfss", "c", "k", None).kind == "az"
    # stacpkg keeps an href with a query whole in store_container, secrets included: we drop them
    signed = f"https://h.example.com/p/a.tif?format=tif&sig={SECRET}&sv=2022-11-02"
    loc = location_from_lock_fields("https", signed, "", None)
    assert loc == Location("https", "https://h.example.com", "p/a.tif?format=tif")
    assert SECRET not in loc.href()


@pytest.mark.parametrize("fields,fragment", [
    ((None, "b", "k", None), "no store_type"),
    (("file", None, None, None), "no key"),
    (("s3", None, "k", None), "no store_container"),
    (("ftp", "h", "k", None), "unsupported store_type 'ftp'"),
])
def test_lock_fields_errors(fields, fragment):
    with pytest.raises(HrefError, match=fragment):
        location_from_lock_fields(*fields)


def test_child_and_store_identity():
    prefix = parse_href("s3://dest/mirror/", endpoint="http://127.0.0.1:9000")
    assert prefix.child("c1/i/a.tif") == Location("s3", "dest", "mirror/c1/i/a.tif", "http://127.0.0.1:9000")
    assert parse_href("s3://dest").child("a.tif").key == "a.tif"
    assert parse_href("/a/x").store_identity() == parse_href("/b/y").store_identity() == ("file", None, None)
    assert parse_href("s3://b/x").store_identity() != parse_href("s3://b/x", endpoint="http://e").store_identity()


@pytest.mark.parametrize("key,ext", [
    ("a/b/scene.tif", ".tif"), ("scene.TIF", ".TIF"), ("x/archive.tar.gz", ".tar.gz"), ("x/a.nc.gz", ".nc.gz"),
    ("x/noext", ""), ("x/.hidden", ""), ("dir.d/file", ""), ("p/a.json?format=x.y", ".json"), ("", ""),
])
def test_extension_of(key, ext):
    assert extension_of(key) == ext
