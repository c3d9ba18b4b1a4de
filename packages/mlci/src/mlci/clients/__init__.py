"""Thin wrappers over the libraries that talk to servers; one request path each."""
