"""The keystore as a Dagster resource: where the keystore file is and where its private key comes from.

The private key (PEM) and its passphrase are ``EnvVar`` values (a Kubernetes Secret as environment
variables), or the key is a file (a Secret mounted as a volume). The keystore file is read when a step
builds its storage registry; a key is decrypted only when a store that uses it is opened.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field

from packager.errors import ConfigError
from packager.keystore import Keystore, PrivateKeySource
from packager.stores import StoreRegistry


class KeystoreResource(dg.ConfigurableResource):
    """An encrypted keystore of named S3 / Swift / WebDAV keys that storage profiles name (``keystore_key``)."""

    url: str = Field(description="The keystore file: a path, 'file:///abs/keystore.json' or 's3://bucket/keystore.json'.")
    private_key: str | None = Field(default=None, description="The private key PEM; give it as EnvVar('NAME').")
    private_key_file: str | None = Field(default=None, description="A file holding the private key PEM "
                                                                   "(e.g. a mounted Kubernetes Secret).")
    passphrase: str | None = Field(default=None, description="Passphrase of the private key; give it as EnvVar.")

    def private_key_source(self) -> PrivateKeySource | None:
        if self.private_key:
            return PrivateKeySource(pem=self.private_key, passphrase=self.passphrase,
                                    label="from keystore.private_key")
        if self.private_key_file:
            return PrivateKeySource(path=Path(self.private_key_file), passphrase=self.passphrase,
                                    label=f"file {self.private_key_file}")
        return None

    def load(self, registry: StoreRegistry | None = None) -> Keystore:
        """The keystore (nothing decrypted yet). ``registry`` reads a keystore that lives on an object store."""
        if not self.url:
            raise ConfigError("keystore.url is empty: name the keystore file")
        return Keystore.load(self.url, registry=registry, private_key=self.private_key_source())
