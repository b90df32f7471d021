"""S3-backed image file storage (beside stock's ``invokeai/app/services/image_files``)."""
