"""stac-packager engine: plain Python, no Dagster.

Turns STAC items into a lock of their assets' live facts, relocates the locked bytes into storage the
user controls, and validates a lock against the live objects. The Dagster assets in ``pipelines`` and
the command line call these modules; a notebook can too.
"""

from packager.memory import prefer_system_arrow_allocator

prefer_system_arrow_allocator()  # before any engine module imports pyarrow: see its docstring
