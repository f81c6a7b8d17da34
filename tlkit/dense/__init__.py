"""Dense evaluation: FC-to-conv conversion and score maps over larger images."""
