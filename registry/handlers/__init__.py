"""HTTP handlers of the distribution API, one module per resource."""
