"""Metallo's tests, laid out as the package: data/, models/, training/, pipeline/, bench/; helpers/ is shared."""
