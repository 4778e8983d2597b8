"""pyreg's registry: the OCI Distribution API v1.1 on filesystem or S3 storage."""
