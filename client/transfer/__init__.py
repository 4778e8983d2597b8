"""Pull and push: whole images between a registry and the local store, blob by blob."""
