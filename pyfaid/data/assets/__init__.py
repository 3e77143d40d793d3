"""Data files of pyfaid.data (as Python modules, so they ship with the package)."""
