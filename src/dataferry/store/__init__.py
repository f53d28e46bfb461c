"""The versioned, signed dataset store (STORE.md)."""
