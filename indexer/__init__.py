"""Turns an image collection into a store: scan, decode, encode, and the FAISS + SQL store."""
