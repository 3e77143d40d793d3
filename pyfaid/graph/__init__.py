"""Mesh graph operators: scaled Laplacian, Chebyshev graph convolution and its modules."""

from pyfaid.graph.activations import ELU, elu
from pyfaid.graph.cheb import ChebConv, ChebResBlock, cheb_conv, laplacian_mm
from pyfaid.graph.laplacian import Laplacian, laplacian_lambda_max, scaled_laplacian

__all__ = ["Laplacian", "scaled_laplacian", "laplacian_lambda_max", "cheb_conv", "laplacian_mm",
           "ChebConv", "ChebResBlock", "elu", "ELU"]
