"""Dagster definitions of stac-packager: assets, checks, jobs, schedules and sensors, kept thin."""
