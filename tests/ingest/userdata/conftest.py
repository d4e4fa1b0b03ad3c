from tests.ingest.compat_support import (  # noqa: F401
    alice,
    anonymous,
    app,
    bob,
    gcs_emulator,
    local_storage,
    make_caller,
    storage,
)
