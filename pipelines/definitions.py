"""The code location: assets, checks, jobs and resources, assembled in one place.

Resources come from the settings file named by ``STAC_PACKAGER_CONFIG`` (see
:mod:`pipelines.settings`), so the same code runs the offline demo, a laptop against Earth Search and
a Kubernetes deployment.
"""

from __future__ import annotations

import dagster as dg

from pipelines.assets import CHAIN, validation_report
from pipelines.settings import build_resources, load_settings

package_job = dg.define_asset_job(
    "package_stac", selection=dg.AssetSelection.assets(*CHAIN),
    description="Search, write items.parquet, lock, relocate and validate: the whole package.")

revalidate_job = dg.define_asset_job(
    "revalidate", selection=dg.AssetSelection.assets(validation_report),
    description="Check the relocated lock against the live objects again.")


def build_definitions(settings_path: str | None = None) -> dg.Definitions:
    return dg.Definitions(assets=CHAIN, jobs=[package_job, revalidate_job],
                          resources=build_resources(load_settings(settings_path)))


defs = build_definitions()
