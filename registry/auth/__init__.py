"""Authentication of registry requests (distribution's `auth` section)."""
