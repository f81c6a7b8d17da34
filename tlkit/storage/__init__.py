"""Object-store paths (``gs://``, ``s3://``) beside local ones: one place that says which is which."""
