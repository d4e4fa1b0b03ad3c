"""The fleet: instances register, heartbeat (renewing their jobs' leases) and publish node catalogues."""
