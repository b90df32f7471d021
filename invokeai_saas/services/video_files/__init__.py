"""Video file storage on S3 for saas mode: the object-store counterpart of stock's ``DiskVideoFileStorage``."""
