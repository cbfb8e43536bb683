"""Real servers for the test suite and the demo, started on 127.0.0.1 and stopped by PID.

* :func:`devservers.seaweedfs.seaweedfs` - an S3 server (SeaweedFS ``weed mini``);
  :func:`devservers.seaweedfs.external_s3_from_env` - an external one (e.g. MinIO) from ``TEST_S3_*``.
* :func:`devservers.pgstac.pgstac_api` - a STAC API (stac-fastapi-pgstac on PostgreSQL 15 + pgstac).
* :mod:`devservers.stacdata` - the STAC test data in ``data/stac`` and deterministic synthetic items.

Kept out of the ``packager`` package on purpose: nothing here is needed at run time.
"""

from devservers.process import DevServerError
from devservers.seaweedfs import S3Server

__all__ = ["DevServerError", "S3Server"]
