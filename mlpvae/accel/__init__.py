"""The accel layer, the lowest of mlpvae: device selection, fused CuPy kernels and batched GEMMs through cuBLAS."""
