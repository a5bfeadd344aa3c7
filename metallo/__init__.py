"""Metallo: learn a scalar property (DOS) from metallographic micrographs and local spectra."""
__version__ = "0.1.0"
