"""mesh/proxy."""
