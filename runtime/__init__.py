"""The embedded container runtime: unpack images and run them in Linux namespaces."""
