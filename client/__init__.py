"""The pyreg client: registry API, auth, transfers, the local image store and the command line."""
