"""Support code for tests: real external components (emulators) started on free 127.0.0.1 ports."""
