from integration.support.fixtures import firebase_auth_env, firebase_emulator  # noqa: F401
