"""Run by test_client.py in the delta-sharing client's own venv: PROFILE SHARE [TIMESTAMP]."""
import contextlib
import json
import sys

import delta_sharing

profile = sys.argv[1]
share = sys.argv[2]
client = delta_sharing.SharingClient(profile)
out = {"tables": [f"{t.share}.{t.schema}.{t.name}" for t in client.list_all_tables()]}
url = f"{profile}#{share}" if share.count(".") == 2 else f"{profile}#{share}.shop.orders"
out["version"] = delta_sharing.get_table_version(url)


def rows(df):
    return sorted(json.loads(df.to_json(orient="records")), key=lambda r: r["id"])
out["all"] = rows(delta_sharing.load_as_pandas(url))
out["limit"] = len(delta_sharing.load_as_pandas(url, limit=10))
out["v1"] = rows(delta_sharing.load_as_pandas(url, version=1))
if len(sys.argv) > 3:
    out["at_v1"] = rows(delta_sharing.load_as_pandas(url, timestamp=sys.argv[3]))
changes = delta_sharing.load_table_changes_as_pandas(url, starting_version=1,
                                                     ending_version=out["version"])
out["changes"] = sorted(
    (r for r in json.loads(changes.drop(columns=["_commit_timestamp"]).to_json(orient="records"))),
    key=lambda r: (r["_commit_version"], r["id"], r["_change_type"]))
out["delta"] = rows(delta_sharing.load_as_pandas(url, use_delta_format=True))
out["delta_v1"] = rows(delta_sharing.load_as_pandas(url, version=1, use_delta_format=True))
out["delta_limit"] = len(delta_sharing.load_as_pandas(url, limit=10, use_delta_format=True))
with contextlib.redirect_stdout(sys.stderr):  # the client prints statistics
    delta_changes = delta_sharing.load_table_changes_as_pandas(
        url, starting_version=1, ending_version=out["version"], use_delta_format=True)
out["delta_changes"] = sorted(
    (r for r in json.loads(delta_changes.drop(columns=["_commit_timestamp"]).to_json(
        orient="records"))),
    key=lambda r: (r["_commit_version"], r["id"], r["_change_type"]))
m = delta_sharing.get_table_metadata(url)
out["schema"] = json.loads(m.schema_string)
print(json.dumps(out))
