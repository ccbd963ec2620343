"""Blob stores: content-addressed files on a local disk or in S3."""
