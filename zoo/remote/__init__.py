"""Object storage for out_dir and cache_dir: the location and its errors, leases, the artifact store and
the shared download cache."""
