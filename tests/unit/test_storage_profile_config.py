"""The Dagster resource config of a storage profile takes every setting the engine's profile takes."""

from __future__ import annotations

import pytest

from packager.errors import ConfigError
from packager.profiles import StorageProfile
from resources.storage import StorageProfileConfig


def test_every_engine_setting_can_be_given_through_dagster_config():
    engine, config = StorageProfile.model_fields, StorageProfileConfig.model_fields
    assert sorted(set(engine) - set(config)) == []
    assert sorted(set(config) - set(engine)) == []
    differing = {name: (field.default, config[name].default) for name, field in engine.items()
                 if field.default != config[name].default and field.default_factory is None}
    assert differing == {}


def test_keystone_settings_and_their_aliases_reach_the_engine():
    profile = StorageProfileConfig.from_settings({
        "name": "archive", "url": "swift://tiles", "auth_url": "https://keystone.example/v3", "username": "svc",
        "password": "pw", "project_name": "eo", "user_domain_name": "Default", "region_name": "RegionTwo",
        "endpoint_type": "internal"}).to_engine()
    assert (profile.project_name, profile.region_name, profile.interface) == ("eo", "RegionTwo", "internal")


def test_provider_endpoint_and_secret_options_reach_the_engine():
    profile = StorageProfileConfig.from_settings({
        "name": "pc", "url": "az://naip", "credential_provider": "planetary_computer",
        "credentials_url": "http://127.0.0.1:9/sas", "secret_options": {"account_key": "k"}}).to_engine()
    assert profile.credentials_url == "http://127.0.0.1:9/sas"
    assert profile.secret_options["account_key"].get_secret_value() == "k"


def test_a_misspelt_setting_is_refused_naming_it_and_the_fix():
    with pytest.raises(ConfigError) as raised:
        StorageProfileConfig.from_settings({"name": "mine", "url": "s3://b", "acess_key_id": "x"})
    assert "storage profile 'mine': unknown setting 'acess_key_id' (did you mean 'access_key_id'" in str(raised.value)
