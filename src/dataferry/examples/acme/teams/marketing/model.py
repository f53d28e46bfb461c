"""Team marketing is written in the Python DSL: the same model as YAML, built in code."""

from dataferry.model import Column, Need, Team

team = Team("marketing", zone="eu", owners=["erin@acme.example"],
            description="Campaigns and segments")

campaigns = team.source("campaigns", kind="sqlite", path="data/shop.db")
campaigns.dataset(
    "campaigns",
    table="campaigns",
    primary_key=["id"],
    columns=[
        Column("id", "int32", nullable=False),
        Column("name", "string"),
        Column("budget", "decimal(12,2)"),
        Column("starts_on", "date"),
    ],
    checks=[{"unique": ["id"]}],
)

team.consumer(
    "segments",
    sink={"kind": "sqlite", "path": "data/out/marketing.db"},
    datasets=[
        Need("shop.customers", mode="merge", columns=["id", "country", "email", "updated_at"],
             mask=["email"]),
        Need("marketing.campaigns"),
    ],
)
