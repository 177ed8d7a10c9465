"""demos/bookinfo."""
